//! The GPUs present: their config form (a fake inventory for tests and GPU-less hosts) and the
//! validated [`Inventory`] the allocator places onto.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::config::ConfigError;

/// A GPU's index as the driver numbers it (what `CUDA_VISIBLE_DEVICES` takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpuId(pub u32);

/// One GPU present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    /// The driver's index.
    pub id: GpuId,
    /// The stable UUID (`GPU-...`), used for device visibility.
    pub uuid: String,
    /// The model name, for display.
    pub model: String,
}

/// Where the GPU list comes from: `[allocator.gpus] source = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventorySource {
    /// NVML when a driver is present, else the configured list.
    #[default]
    Auto,
    /// NVML only; starting fails without a driver.
    Nvml,
    /// The configured list only (a fake inventory on machines without GPUs).
    Config,
}

/// One configured GPU: `[[allocator.gpus.devices]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuConfig {
    /// The driver's index.
    pub index: u32,
    /// The stable UUID.
    pub uuid: String,
    /// The model name.
    pub model: String,
}

/// The `[allocator.gpus]` section.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuInventoryConfig {
    /// Where the list comes from.
    #[serde(default)]
    pub source: InventorySource,
    /// The GPUs when the list comes from config.
    #[serde(default)]
    pub devices: Vec<GpuConfig>,
}

/// A validated list of GPUs: indices and UUIDs are unique, sorted by index.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Inventory {
    gpus: Vec<Gpu>,
}

impl Inventory {
    /// The inventory from its config list.
    pub fn from_config(config: &GpuInventoryConfig) -> Result<Inventory, ConfigError> {
        let gpus = config
            .devices
            .iter()
            .map(|device| Gpu {
                id: GpuId(device.index),
                uuid: device.uuid.clone(),
                model: device.model.clone(),
            })
            .collect();
        Inventory::new(gpus)
    }

    /// An inventory from GPUs found by the caller (NVML); checks uniqueness.
    pub fn new(mut gpus: Vec<Gpu>) -> Result<Inventory, ConfigError> {
        gpus.sort_by_key(|gpu| gpu.id);
        let mut uuids = BTreeSet::new();
        for pair in gpus.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(ConfigError::DuplicateGpuIndex {
                    index: pair[0].id.0,
                });
            }
        }
        for gpu in &gpus {
            if gpu.uuid.is_empty() {
                return Err(ConfigError::EmptyGpuUuid { index: gpu.id.0 });
            }
            if !uuids.insert(gpu.uuid.as_str()) {
                return Err(ConfigError::DuplicateGpuUuid {
                    uuid: gpu.uuid.clone(),
                });
            }
        }
        Ok(Inventory { gpus })
    }

    /// A fake inventory of `count` identical GPUs, indices `0..count`.
    pub fn fake(count: u32, model: &str) -> Inventory {
        let gpus = (0..count)
            .map(|index| Gpu {
                id: GpuId(index),
                uuid: format!("GPU-fake-{index:04}"),
                model: model.to_owned(),
            })
            .collect();
        Inventory { gpus }
    }

    /// The GPUs, sorted by index.
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// How many GPUs are present.
    pub fn len(&self) -> u32 {
        self.gpus.len() as u32
    }

    /// Whether no GPU is present.
    pub fn is_empty(&self) -> bool {
        self.gpus.is_empty()
    }

    /// Whether a GPU with this index is present.
    pub fn contains(&self, id: GpuId) -> bool {
        self.gpus.binary_search_by_key(&id, |gpu| gpu.id).is_ok()
    }

    /// The GPU with this index.
    pub fn get(&self, id: GpuId) -> Option<&Gpu> {
        self.gpus
            .binary_search_by_key(&id, |gpu| gpu.id)
            .ok()
            .map(|idx| &self.gpus[idx])
    }
}
