//! Config parsing: the TOML form the server embeds, and validation.

use expect_test::expect;

use crate::{AllocatorConfig, GpuInventoryConfig, Inventory, PolicyKind, Settings, TiersConfig};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Root {
    allocator: AllocatorConfig,
    tiers: TiersConfig,
    gpus: GpuInventoryConfig,
}

const EXAMPLE: &str = r#"
[allocator]
policy = "commons"
usage_half_life_s = 86400
reclaim_warning_s = 120

[tiers.free]
share_weight = 1.0
gpu_hours_per_week_max = 30.0
lifetime_s_max = 43200
idle_reclaim_after_s = 900

[tiers.pro]
share_weight = 2.0
gpus_max = 4
gpus_per_kernel_max = 2

[gpus]
source = "config"
devices = [
  { index = 0, uuid = "GPU-aaaa", model = "Fake A100" },
  { index = 1, uuid = "GPU-bbbb", model = "Fake A100" },
]
"#;

#[test]
fn example_config_parses_and_validates() {
    let root: Root = toml::from_str(EXAMPLE).expect("example parses");
    assert_eq!(root.allocator.policy, PolicyKind::Commons);
    assert_eq!(
        root.allocator.queue_requests_max,
        AllocatorConfig::default().queue_requests_max
    );
    let settings = Settings::new(root.allocator, &root.tiers).expect("example is valid");
    let free = &settings.tiers[&crate::TierName::new("free")];
    assert_eq!(free.gpu_seconds_per_week_max, 30.0 * 3_600.0);
    assert_eq!(settings.tiers[&crate::TierName::new("pro")].gpus_max, 4);
    let inventory = Inventory::from_config(&root.gpus).expect("inventory is valid");
    assert_eq!(inventory.len(), 2);
    assert_eq!(inventory.gpus()[1].uuid, "GPU-bbbb");
}

#[test]
fn unknown_keys_are_rejected() {
    let error = toml::from_str::<Root>(&EXAMPLE.replace("idle_reclaim_after_s", "idle_after_s"))
        .err()
        .expect("a typo fails");
    expect![[r#"unknown field `idle_after_s`"#]]
        .assert_eq(error.message().split(',').next().unwrap());
}

#[test]
fn invalid_values_say_which_key() {
    let mut tiers: TiersConfig = toml::from_str("[free]\nshare_weight = 0.0\n").expect("parses");
    let error = Settings::new(AllocatorConfig::default(), &tiers).expect_err("zero weight");
    expect!["tiers.free.share_weight must be a positive number"].assert_eq(&error.to_string());
    tiers.clear();
    let error = Settings::new(AllocatorConfig::default(), &tiers).expect_err("no tiers");
    expect!["no tier is configured under [tiers]"].assert_eq(&error.to_string());
}

#[test]
fn duplicate_gpus_are_rejected() {
    let config: GpuInventoryConfig = toml::from_str(
        "devices = [{ index = 0, uuid = \"GPU-a\", model = \"m\" }, { index = 1, uuid = \"GPU-a\", model = \"m\" }]",
    )
    .expect("parses");
    let error = Inventory::from_config(&config).expect_err("duplicate uuid");
    expect!["two GPUs have uuid GPU-a"].assert_eq(&error.to_string());
}
