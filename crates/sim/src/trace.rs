//! Loading the Alibaba GPU pod trace (`openb_pod_list_default.csv`, cluster-trace-gpu-v2023).

use std::path::Path;

use anyhow::{bail, Context};

/// One pod of the trace that asked for GPUs and was scheduled.
#[derive(Clone, Debug, PartialEq)]
pub struct TracePod {
    /// Submission time, seconds from the trace's start.
    pub creation_s: f64,
    /// How long it held its GPUs (deletion minus scheduling), seconds.
    pub held_s: f64,
    /// Whole GPUs asked for; a fractional request counts as one whole GPU.
    pub gpus: u32,
    /// The Kubernetes QoS class (`LS`, `BE`, ...).
    pub qos: String,
}

/// Reads the trace, keeping pods that asked for GPUs and were scheduled.
pub fn load(path: &Path) -> anyhow::Result<Vec<TracePod>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading trace {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing trace {}", path.display()))
}

/// Parses the trace's CSV text.
pub fn parse(text: &str) -> anyhow::Result<Vec<TracePod>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty trace")?.split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|column| column.trim() == name)
            .with_context(|| format!("no column {name}"))
    };
    let (num_gpu, gpu_milli, qos) = (column("num_gpu")?, column("gpu_milli")?, column("qos")?);
    let (creation, scheduled, deletion) = (
        column("creation_time")?,
        column("scheduled_time")?,
        column("deletion_time")?,
    );
    let mut pods = Vec::new();
    for (idx, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != header.len() {
            bail!(
                "line {}: {} fields, expected {}",
                idx + 2,
                fields.len(),
                header.len()
            );
        }
        let number = |col: usize| -> anyhow::Result<Option<f64>> {
            let field = fields[col].trim();
            if field.is_empty() {
                return Ok(None);
            }
            field
                .parse::<f64>()
                .map(Some)
                .with_context(|| format!("line {}: bad number {field:?}", idx + 2))
        };
        let whole = number(num_gpu)?.unwrap_or(0.0) as u32;
        let milli = number(gpu_milli)?.unwrap_or(0.0);
        if whole == 0 && milli <= 0.0 {
            continue;
        }
        let (Some(created), Some(scheduled), Some(deleted)) =
            (number(creation)?, number(scheduled)?, number(deletion)?)
        else {
            continue;
        };
        pods.push(TracePod {
            creation_s: created,
            held_s: (deleted - scheduled).max(0.0),
            gpus: whole.max(1),
            qos: fields[qos].trim().to_owned(),
        });
    }
    Ok(pods)
}
