//! The human table: one row per metric, one column per policy, and the target.

use std::fmt::Write as _;

use crate::metrics::Metrics;
use crate::workload::Workload;

fn seconds(value: Option<f64>) -> String {
    match value {
        Some(secs) if secs < 120.0 => format!("{secs:.0} s"),
        Some(secs) if secs < 7_200.0 => format!("{:.1} min", secs / 60.0),
        Some(secs) => format!("{:.1} h", secs / 3_600.0),
        None => "never".to_owned(),
    }
}

/// Renders the results as a Markdown table.
pub fn table(workload: &Workload, results: &[Metrics]) -> String {
    let mut out = String::new();
    let load = results.first().map_or(0.0, |metrics| metrics.offered_load);
    writeln!(
        out,
        "workload: {}; {} GPUs; {} users; offered load {load:.2}; window {:.1} h after {:.1} h warm-up",
        workload.name,
        workload.gpus,
        workload.users.len(),
        (workload.horizon_s - workload.warmup_s) / 3_600.0,
        workload.warmup_s / 3_600.0,
    )
    .expect("writing to a string");
    let fifo_busy = results
        .iter()
        .find(|metrics| metrics.policy == "fifo")
        .map(|metrics| metrics.gpu_busy_utilisation);
    let mut header = "| metric |".to_owned();
    let mut rule = "|---|".to_owned();
    for metrics in results {
        write!(header, " {} |", metrics.policy).expect("writing to a string");
        rule.push_str("---|");
    }
    header.push_str(" target (commons) |");
    rule.push_str("---|");
    writeln!(out, "{header}\n{rule}").expect("writing to a string");
    let mut row = |name: &str, target: &str, cell: &dyn Fn(&Metrics) -> String| {
        let mut line = format!("| {name} |");
        for metrics in results {
            write!(line, " {} |", cell(metrics)).expect("writing to a string");
        }
        writeln!(out, "{line} {target} |").expect("writing to a string");
    };
    row("GPU held utilisation", "", &|m| {
        format!("{:.1} %", 100.0 * m.gpu_held_utilisation)
    });
    let busy_target = fifo_busy.map_or(String::new(), |busy| {
        format!("≥ {:.1} % (1.5 × FIFO)", 150.0 * busy)
    });
    row("GPU busy utilisation", &busy_target, &|m| {
        format!("{:.1} %", 100.0 * m.gpu_busy_utilisation)
    });
    row("wait p50", "", &|m| seconds(m.wait_p50_s));
    row("wait p95", "", &|m| seconds(m.wait_p95_s));
    row("wait p99", "", &|m| seconds(m.wait_p99_s));
    row("requests never served", "", &|m| {
        format!("{} of {}", m.requests_unserved, m.requests)
    });
    row("newcomer first GPU p50", "≤ 15 s", &|m| {
        seconds(m.newcomer_first_gpu_p50_s)
    });
    row("newcomer first GPU p95", "≤ 60 s", &|m| {
        seconds(m.newcomer_first_gpu_p95_s)
    });
    row("newcomers never served", "", &|m| {
        format!("{} of {}", m.newcomers_unserved, m.newcomers)
    });
    row("Jain (demand-normalised), median hour", "≥ 0.95", &|m| {
        format!("{:.3}", m.jain_median)
    });
    row("Jain, 10th percentile hour", "", &|m| {
        format!("{:.3}", m.jain_p10)
    });
    row("top 1 % users: received / entitled", "≤ 1.2", &|m| {
        format!("{:.2}", m.top1_share_over_entitlement)
    });
    row("top 1 % users: share of GPU time held", "", &|m| {
        format!("{:.1} %", 100.0 * m.top1_share_of_held)
    });
    row("reclaims", "", &|m| m.reclaims.to_string());
    row(
        "wrongly reclaimed (% of sessions placed)",
        "≤ 1 %",
        &|m| {
            format!(
                "{:.2} % ({} of {})",
                m.wrongly_reclaimed_pct, m.wrongly_reclaimed, m.sessions_placed
            )
        },
    );
    row("wrong: busy / no waiter under share / grace", "", &|m| {
        format!(
            "{} / {} / {}",
            m.wrong_busy, m.wrong_no_waiter, m.wrong_grace
        )
    });
    row("stops at lifetime or quota", "", &|m| m.stops.to_string());
    row("refusals (of which quota)", "", &|m| {
        format!("{} ({})", m.refusals, m.quota_refusals)
    });
    out
}
