//! Decision cost with 10,000 requests queued: times `Allocator::handle` for a mix of events
//! (new requests, exits that place from the queue, activity changes, ticks) under the Commons
//! policy and prints p50, p99 and max. Run with `cargo bench -p commonlab-allocator`.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use commonlab_allocator::{
    Activity, Allocator, AllocatorConfig, Event, Inventory, PolicyKind, RequestId, Settings,
    StartRequest, TierConfig, TierName, TiersConfig, Timestamp, UserId,
};

const QUEUED: u64 = 10_000;
const GPUS: u32 = 64;
const SAMPLES: usize = 4_000;

fn main() {
    let mut tiers = TiersConfig::new();
    tiers.insert(
        "free".to_owned(),
        TierConfig {
            gpu_hours_per_week_max: 10_000.0,
            ..TierConfig::default()
        },
    );
    tiers.insert(
        "pro".to_owned(),
        TierConfig {
            share_weight: 2.0,
            gpus_max: 4,
            gpu_hours_per_week_max: 10_000.0,
            ..TierConfig::default()
        },
    );
    for policy in [
        PolicyKind::Commons,
        PolicyKind::SlurmFairShare,
        PolicyKind::Fifo,
    ] {
        let config = AllocatorConfig {
            policy,
            queue_requests_max: 50_000,
            ..AllocatorConfig::default()
        };
        let settings = Settings::new(config, &tiers).expect("bench config is valid");
        run(
            policy,
            Allocator::new(settings, Inventory::fake(GPUS, "Bench")),
        );
    }
}

fn run(policy: PolicyKind, mut allocator: Allocator) {
    let mut next_id = 0u64;
    let mut now = Timestamp::ZERO;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut request = |allocator: &mut Allocator, now: Timestamp, user: u64| {
        next_id += 1;
        let tier = if user.is_multiple_of(5) {
            "pro"
        } else {
            "free"
        };
        let event = Event::StartRequested(StartRequest {
            request: RequestId(next_id),
            user: UserId::new(&format!("user{user}")),
            tier: TierName::new(tier),
            gpus: 1,
        });
        allocator.handle(now, event);
    };
    for user in 0..(u64::from(GPUS) + QUEUED) {
        now = Timestamp::from_millis(now.as_millis() + 10);
        request(&mut allocator, now, user);
    }
    assert_eq!(allocator.queue_len() as u64, QUEUED);
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut user = u64::from(GPUS) + QUEUED;
    for sample in 0..SAMPLES {
        now = Timestamp::from_millis(now.as_millis() + 1_000);
        let kernels = allocator.kernels();
        let event = match sample % 4 {
            0 => {
                user += 1;
                next_id += 1;
                Event::StartRequested(StartRequest {
                    request: RequestId(next_id),
                    user: UserId::new(&format!("user{user}")),
                    tier: TierName::new("free"),
                    gpus: 1,
                })
            }
            1 => Event::Exited {
                request: kernels[(rand() % kernels.len() as u64) as usize].request,
            },
            2 => Event::Activity {
                request: kernels[(rand() % kernels.len() as u64) as usize].request,
                activity: if rand() % 2 == 0 {
                    Activity::Busy
                } else {
                    Activity::Idle
                },
            },
            _ => Event::Tick,
        };
        let started = Instant::now();
        let decisions = allocator.handle(now, event);
        samples.push(started.elapsed());
        std::hint::black_box(decisions);
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "policy={} queued={} gpus={GPUS} samples={SAMPLES} p50={:?} p99={:?} max={:?}",
        policy.name(),
        allocator.queue_len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
}
