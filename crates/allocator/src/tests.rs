//! Tests: scripted scenarios with snapshot output through one `check_decisions`, seeded random
//! simulations that check the invariants after every step, and config parsing.

mod config;
mod scenarios;
mod simulation;

use std::fmt::Write as _;

use crate::{
    Activity, Allocator, AllocatorConfig, Event, Inventory, PolicyKind, RequestId, Settings,
    StartRequest, TierConfig, TierName, TiersConfig, Timestamp, UserId,
};

/// The tiers every scripted test runs with.
pub(crate) fn test_tiers() -> TiersConfig {
    let mut tiers = TiersConfig::new();
    tiers.insert(
        "free".to_owned(),
        TierConfig {
            share_weight: 1.0,
            kernels_max: 2,
            gpus_max: 2,
            gpus_per_kernel_max: 1,
            gpu_hours_per_week_max: 2.0,
            lifetime_s_max: 4 * 3_600,
            idle_reclaim_after_s: 600,
        },
    );
    tiers.insert(
        "pro".to_owned(),
        TierConfig {
            share_weight: 3.0,
            kernels_max: 4,
            gpus_max: 4,
            gpus_per_kernel_max: 4,
            gpu_hours_per_week_max: 100.0,
            lifetime_s_max: 8 * 3_600,
            idle_reclaim_after_s: 1_800,
        },
    );
    tiers
}

pub(crate) fn test_config(policy: PolicyKind) -> AllocatorConfig {
    AllocatorConfig {
        policy,
        usage_half_life_s: 3_600,
        reclaim_warning_s: 60,
        lifetime_warning_s: 600,
        queue_requests_max: 1_000,
        queue_positions_reported_max: 100,
        backfill_reserve_after_s: 900,
        idle_gpus_count_as_demand: true,
    }
}

fn parse_duration(text: &str) -> Timestamp {
    let mut secs = 0u64;
    let mut number = String::new();
    for ch in text.chars() {
        match ch {
            '0'..='9' => number.push(ch),
            'h' | 'm' | 's' | 'd' => {
                let value: u64 = number
                    .parse()
                    .unwrap_or_else(|_| panic!("bad duration {text}"));
                number.clear();
                secs += value
                    * match ch {
                        'd' => 86_400,
                        'h' => 3_600,
                        'm' => 60,
                        _ => 1,
                    };
            }
            _ => panic!("bad duration {text}"),
        }
    }
    if !number.is_empty() {
        secs += number
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("bad duration {text}"));
    }
    Timestamp::from_secs(secs)
}

fn parse_request(text: &str) -> RequestId {
    RequestId(
        text.trim_start_matches('r')
            .parse()
            .unwrap_or_else(|_| panic!("bad request id {text}")),
    )
}

/// Runs a script and returns one line per step that produced decisions.
///
/// Header lines: `policy <name>`, `gpus <n>`. Step lines: `<time> <verb> <args>` with verbs
/// `start <req> <user> <tier> <gpus>`, `exit <req>`, `busy <req>`, `idle <req>`, `tick`,
/// `gpus <n>` (inventory change) and `ledger <user> <tier> <from> <to> <gpus>`. Before each
/// step the script ticks at every deadline the allocator announces, as the supervisor does.
/// Invariants are checked after every step.
fn run_script(script: &str) -> String {
    let mut policy = PolicyKind::Commons;
    let mut gpus = 2;
    let mut steps = Vec::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "policy" => {
                policy = match words[1] {
                    "fifo" => PolicyKind::Fifo,
                    "colab_like" => PolicyKind::ColabLike,
                    "slurm_fair_share" => PolicyKind::SlurmFairShare,
                    "commons" => PolicyKind::Commons,
                    other => panic!("unknown policy {other}"),
                }
            }
            "gpus" => gpus = words[1].parse().expect("gpu count"),
            _ => steps.push(words),
        }
    }
    let settings = Settings::new(test_config(policy), &test_tiers()).expect("test config is valid");
    let mut allocator = Allocator::new(settings, Inventory::fake(gpus, "Fake"));
    let mut log = String::new();
    let record = |log: &mut String, at: Timestamp, what: &str, decisions: Vec<crate::Decision>| {
        if decisions.is_empty() && what == "tick" {
            return;
        }
        let rendered: Vec<String> = decisions.iter().map(ToString::to_string).collect();
        let rendered = if rendered.is_empty() {
            "-".to_owned()
        } else {
            rendered.join("; ")
        };
        writeln!(log, "{at:>7} {what}: {rendered}").expect("writing to a string");
    };
    for words in steps {
        let at = parse_duration(words[0]);
        while let Some(deadline) = allocator.next_deadline().filter(|deadline| *deadline <= at) {
            let decisions = allocator.handle(deadline, Event::Tick);
            allocator
                .check_invariants()
                .unwrap_or_else(|violation| panic!("{violation}"));
            record(&mut log, deadline, "tick", decisions);
        }
        let event = match words[1] {
            "start" => Event::StartRequested(StartRequest {
                request: parse_request(words[2]),
                user: UserId::new(words[3]),
                tier: TierName::new(words[4]),
                gpus: words[5].parse().expect("gpus wanted"),
            }),
            "exit" => Event::Exited {
                request: parse_request(words[2]),
            },
            "busy" => Event::Activity {
                request: parse_request(words[2]),
                activity: Activity::Busy,
            },
            "idle" => Event::Activity {
                request: parse_request(words[2]),
                activity: Activity::Idle,
            },
            "tick" => Event::Tick,
            "gpus" => {
                let count: u32 = words[2].parse().expect("gpu count");
                Event::InventoryChanged {
                    gpus: Inventory::fake(count, "Fake").gpus().to_vec(),
                }
            }
            "ledger" => Event::UsageLoaded {
                user: UserId::new(words[2]),
                tier: TierName::new(words[3]),
                records: vec![crate::UsageRecord {
                    start: parse_duration(words[4]),
                    end: parse_duration(words[5]),
                    gpus: words[6].parse().expect("gpus"),
                }],
            },
            other => panic!("unknown verb {other}"),
        };
        let decisions = allocator.handle(at, event);
        allocator
            .check_invariants()
            .unwrap_or_else(|violation| panic!("{violation}"));
        record(&mut log, at, &words[1..].join(" "), decisions);
    }
    log
}

/// The one place scripted tests exercise the allocator: data in, snapshot out.
pub(crate) fn check_decisions(script: &str, expect: expect_test::Expect) {
    expect.assert_eq(&run_script(script));
}

#[test]
fn water_fill_gives_leftovers_to_the_heavier_claims_by_weight() {
    use crate::{water_fill, water_level, ShareClaim};
    let claims = [
        ShareClaim {
            weight: 1.0,
            demand: 1.0,
        },
        ShareClaim {
            weight: 1.0,
            demand: 4.0,
        },
        ShareClaim {
            weight: 2.0,
            demand: 8.0,
        },
        ShareClaim {
            weight: 1.0,
            demand: 0.0,
        },
    ];
    let shares = water_fill(&claims, 7.0);
    assert_eq!(shares, vec![1.0, 2.0, 4.0, 0.0]);
    assert_eq!(water_level(&claims, 7.0), 2.0);
    assert_eq!(water_level(&claims, 20.0), f64::INFINITY);
    assert_eq!(water_fill(&claims, 20.0), vec![1.0, 4.0, 8.0, 0.0]);
}

#[test]
fn queue_status_answers_positions_past_the_reported_range() {
    let mut config = test_config(PolicyKind::Commons);
    config.queue_positions_reported_max = 1;
    let settings = Settings::new(config, &test_tiers()).expect("valid");
    let mut allocator = Allocator::new(settings, Inventory::fake(1, "Fake"));
    let start = |id: u64, user: &str| {
        Event::StartRequested(StartRequest {
            request: RequestId(id),
            user: UserId::new(user),
            tier: TierName::new("free"),
            gpus: 1,
        })
    };
    let at = Timestamp::from_secs(10);
    allocator.handle(at, start(1, "a"));
    allocator.handle(at, start(2, "b"));
    let decisions = allocator.handle(at, start(3, "c"));
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let status = allocator.queue_status(RequestId(3)).expect("queued");
    assert_eq!(status.position, 2);
    assert_eq!(
        status.estimate, None,
        "two GPUs' worth needs more than one lifetime end"
    );
    assert_eq!(
        allocator
            .queue_status(RequestId(2))
            .map(|status| status.estimate),
        Some(Some(Timestamp::from_secs(10 + 4 * 3_600)))
    );
    assert_eq!(allocator.queue_status(RequestId(1)), None);
}
