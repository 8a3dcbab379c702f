//! Workloads: users and their notebook sessions, synthetic (seeded) or from the pod trace
//! with seeded synthetic users. A session alternates busy and idle phases; it holds its GPUs
//! through both, which is what makes busy-versus-held utilisation and idle reclaim matter.

use crate::rng::Rng;
use crate::trace::TracePod;

/// A user's tier in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimTier {
    /// The `free` tier.
    Free,
    /// The `pro` tier.
    Pro,
}

impl SimTier {
    /// The tier's configured name.
    pub fn name(self) -> &'static str {
        match self {
            SimTier::Free => "free",
            SimTier::Pro => "pro",
        }
    }
}

/// A simulated user.
#[derive(Clone, Debug)]
pub struct SimUser {
    /// The user's name.
    pub name: String,
    /// The user's tier.
    pub tier: SimTier,
    /// Whether the generator made this user a heavy one (holds GPUs back to back).
    pub heavy: bool,
}

/// One notebook session: what the user will do once it has GPUs.
#[derive(Clone, Debug)]
pub struct SessionPlan {
    /// Index into [`Workload::users`].
    pub user: usize,
    /// When the user opens it, seconds; ignored for sessions of a back-to-back chain.
    pub arrive_s: f64,
    /// GPUs wanted.
    pub gpus: u32,
    /// Phase lengths in seconds, alternating busy and idle, starting busy and ending idle.
    pub phases: Vec<f64>,
}

impl SessionPlan {
    /// Seconds from placement to exit if never interrupted.
    pub fn length_s(&self) -> f64 {
        self.phases.iter().sum()
    }
}

/// Sessions one user runs back to back: the next opens as soon as the previous one ends,
/// is stopped, reclaimed or refused.
#[derive(Clone, Debug)]
pub struct Chain {
    /// Index into [`Workload::users`].
    pub user: usize,
    /// When the first session opens.
    pub start_s: f64,
    /// The sessions, in order.
    pub sessions: Vec<SessionPlan>,
}

/// A complete workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// What it is, for the report.
    pub name: String,
    /// GPUs in the (fake) inventory.
    pub gpus: u32,
    /// Measurement starts here (seconds).
    pub warmup_s: f64,
    /// Measurement ends here (seconds).
    pub horizon_s: f64,
    /// The simulation runs until here, so requests made near the horizon can still be served.
    pub end_s: f64,
    /// The users.
    pub users: Vec<SimUser>,
    /// Sessions opened at their own arrival times, sorted by arrival.
    pub sessions: Vec<SessionPlan>,
    /// Back-to-back chains of heavy users.
    pub chains: Vec<Chain>,
}

impl Workload {
    /// GPU-seconds each user plans to hold within the measurement window: sessions arriving in
    /// the window count whole, chains count their GPUs over the whole window.
    pub fn planned_demand(&self) -> Vec<f64> {
        let mut demand = vec![0.0; self.users.len()];
        for session in &self.sessions {
            if session.arrive_s >= self.warmup_s && session.arrive_s < self.horizon_s {
                demand[session.user] += f64::from(session.gpus) * session.length_s();
            }
        }
        for chain in &self.chains {
            let gpus = chain.sessions.first().map_or(0, |session| session.gpus);
            demand[chain.user] +=
                f64::from(gpus) * (self.horizon_s - self.warmup_s.max(chain.start_s)).max(0.0);
        }
        demand
    }

    /// Offered load: planned GPU-seconds in the window over GPU-seconds available.
    pub fn offered_load(&self) -> f64 {
        let window = (self.horizon_s - self.warmup_s) * f64::from(self.gpus);
        self.planned_demand().iter().sum::<f64>() / window
    }
}

/// Knobs of the synthetic generator.
#[derive(Clone, Debug)]
pub struct SyntheticParams {
    /// GPUs present.
    pub gpus: u32,
    /// Ordinary users.
    pub regular_users: usize,
    /// Heavy users, holding GPUs back to back.
    pub heavy_users: usize,
    /// Back-to-back chains each heavy user keeps open.
    pub heavy_chains: usize,
    /// Share of users in the pro tier.
    pub pro_fraction: f64,
    /// Days simulated, warm-up included.
    pub days: f64,
    /// Days of warm-up before measurement.
    pub warmup_days: f64,
    /// Hours simulated after the horizon.
    pub drain_hours: f64,
    /// Target offered load.
    pub load: f64,
    /// Share of ordinary users who first arrive during the run (newcomers).
    pub newcomer_fraction: f64,
    /// Share of sessions left open and idle after their user stops working.
    pub left_idle_fraction: f64,
}

impl Default for SyntheticParams {
    fn default() -> SyntheticParams {
        SyntheticParams {
            gpus: 16,
            regular_users: 297,
            heavy_users: 3,
            heavy_chains: 2,
            pro_fraction: 0.2,
            days: 4.0,
            warmup_days: 1.0,
            drain_hours: 12.0,
            load: 1.3,
            newcomer_fraction: 0.6,
            left_idle_fraction: 0.35,
        }
    }
}

const MINUTE: f64 = 60.0;
const HOUR: f64 = 3_600.0;
const DAY: f64 = 86_400.0;

/// Busy and idle phases filling `active_s`, then an idle tail.
fn phases(
    rng: &mut Rng,
    active_s: f64,
    busy_mean_s: f64,
    idle_mean_s: f64,
    tail_s: f64,
) -> Vec<f64> {
    let mut phases = Vec::new();
    let mut elapsed = 0.0;
    loop {
        let busy = rng
            .exp(busy_mean_s)
            .max(5.0)
            .min((active_s - elapsed).max(5.0));
        phases.push(busy);
        elapsed += busy;
        if elapsed >= active_s {
            break;
        }
        let idle = rng.exp(idle_mean_s).max(5.0);
        phases.push(idle);
        elapsed += idle;
        if elapsed >= active_s {
            phases.push(5.0);
            break;
        }
    }
    phases.push(tail_s.max(1.0));
    phases
}

fn regular_session(
    rng: &mut Rng,
    user: usize,
    tier: SimTier,
    arrive_s: f64,
    left_idle_fraction: f64,
) -> SessionPlan {
    let active = rng
        .lognormal(45.0 * MINUTE, 0.9)
        .clamp(2.0 * MINUTE, 10.0 * HOUR);
    let tail = if rng.chance(left_idle_fraction) {
        rng.uniform(1.0 * HOUR, 8.0 * HOUR)
    } else {
        rng.exp(3.0 * MINUTE)
    };
    let gpus = if tier == SimTier::Pro && rng.chance(0.15) {
        2
    } else {
        1
    };
    SessionPlan {
        user,
        arrive_s,
        gpus,
        phases: phases(rng, active, 5.0 * MINUTE, 10.0 * MINUTE, tail),
    }
}

fn heavy_session(rng: &mut Rng, user: usize) -> SessionPlan {
    let active = rng.lognormal(6.0 * HOUR, 0.3);
    let tail = rng.exp(5.0 * MINUTE);
    SessionPlan {
        user,
        arrive_s: 0.0,
        gpus: 1,
        phases: phases(rng, active, 45.0 * MINUTE, 8.0 * MINUTE, tail),
    }
}

/// The seeded synthetic workload: a few heavy users holding GPUs back to back from the start,
/// established users, newcomers arriving throughout, free and pro tiers, and sessions left
/// idle. The session arrival rate is set so that the offered load matches `params.load`.
pub fn synthetic(params: &SyntheticParams, seed: u64) -> Workload {
    let root = Rng::new(seed);
    let mut users_rng = root.fork(1);
    let mut users = Vec::new();
    for idx in 0..params.heavy_users {
        let tier = if idx % 2 == 1 {
            SimTier::Pro
        } else {
            SimTier::Free
        };
        users.push(SimUser {
            name: format!("heavy{idx}"),
            tier,
            heavy: true,
        });
    }
    let horizon = params.days * DAY;
    let warmup = params.warmup_days * DAY;
    let end = horizon + params.drain_hours * HOUR;
    let mut joins = Vec::new();
    let mut activity = Vec::new();
    for idx in 0..params.regular_users {
        let tier = if users_rng.chance(params.pro_fraction) {
            SimTier::Pro
        } else {
            SimTier::Free
        };
        users.push(SimUser {
            name: format!("user{idx}"),
            tier,
            heavy: false,
        });
        let newcomer = users_rng.chance(params.newcomer_fraction);
        joins.push(if newcomer {
            users_rng.uniform(0.0, horizon)
        } else {
            users_rng.uniform(0.0, 4.0 * HOUR)
        });
        activity.push(users_rng.lognormal(1.0, 0.7));
    }
    let mut chains = Vec::new();
    let mut chain_rng = root.fork(2);
    for user in 0..params.heavy_users {
        for _ in 0..params.heavy_chains {
            let mut sessions = Vec::new();
            let mut covered = 0.0;
            while covered < end * 2.0 {
                let session = heavy_session(&mut chain_rng, user);
                covered += session.length_s();
                sessions.push(session);
            }
            chains.push(Chain {
                user,
                start_s: chain_rng.uniform(0.0, 10.0 * MINUTE),
                sessions,
            });
        }
    }
    // Mean GPU-seconds of a regular session, measured on a separate stream.
    let mut sample_rng = root.fork(3);
    let samples = 20_000;
    let mean_gpu_s = (0..samples)
        .map(|idx| {
            let tier = if idx % 5 == 0 {
                SimTier::Pro
            } else {
                SimTier::Free
            };
            let session = regular_session(&mut sample_rng, 0, tier, 0.0, params.left_idle_fraction);
            f64::from(session.gpus) * session.length_s()
        })
        .sum::<f64>()
        / f64::from(samples);
    let heavy_rate = (params.heavy_users * params.heavy_chains) as f64;
    let regular_rate = (params.load * f64::from(params.gpus) - heavy_rate).max(0.0);
    // Sessions per second per unit of activity, so that the expected demand in the window
    // matches the target load.
    let present_activity: f64 = joins
        .iter()
        .zip(&activity)
        .map(|(join, activity)| activity * (horizon - join.max(warmup)).max(0.0))
        .sum();
    // Every user's first session opens at their join time; those in the window are part of
    // the budget, and Poisson arrivals make up the rest.
    let joins_in_window = joins
        .iter()
        .filter(|join| **join >= warmup && **join < horizon)
        .count() as f64;
    let poisson_budget =
        (regular_rate * (horizon - warmup) - joins_in_window * mean_gpu_s).max(0.0);
    let per_activity = poisson_budget / (present_activity * mean_gpu_s).max(1e-9);
    let mut sessions = Vec::new();
    let mut session_rng = root.fork(4);
    for (idx, (join, activity)) in joins.iter().zip(&activity).enumerate() {
        let user = params.heavy_users + idx;
        let tier = users[user].tier;
        let rate = per_activity * activity;
        sessions.push(regular_session(
            &mut session_rng,
            user,
            tier,
            *join,
            params.left_idle_fraction,
        ));
        let mut at = *join + session_rng.exp(1.0 / rate.max(1e-12));
        while at < end {
            sessions.push(regular_session(
                &mut session_rng,
                user,
                tier,
                at,
                params.left_idle_fraction,
            ));
            at += session_rng.exp(1.0 / rate.max(1e-12));
        }
    }
    sessions.sort_by(|a, b| a.arrive_s.total_cmp(&b.arrive_s).then(a.user.cmp(&b.user)));
    Workload {
        name: format!("synthetic (seed {seed})"),
        gpus: params.gpus,
        warmup_s: warmup,
        horizon_s: horizon,
        end_s: end,
        users,
        sessions,
        chains,
    }
}

/// Knobs for replaying the pod trace.
#[derive(Clone, Debug)]
pub struct TraceParams {
    /// Days of the trace replayed, counted back from its last pod.
    pub days: f64,
    /// Days of warm-up at the start of that window.
    pub warmup_days: f64,
    /// Hours simulated after the window.
    pub drain_hours: f64,
    /// Synthetic users the pods are dealt to.
    pub users: usize,
    /// Zipf exponent of how pods are dealt: user k gets weight 1 / k^s.
    pub zipf_s: f64,
    /// Share of users in the pro tier.
    pub pro_fraction: f64,
    /// Target offered load; the GPU count is chosen to match it.
    pub load: f64,
    /// Share of sessions whose last 40 % is left idle.
    pub left_idle_fraction: f64,
}

impl Default for TraceParams {
    fn default() -> TraceParams {
        TraceParams {
            days: 14.0,
            warmup_days: 2.0,
            drain_hours: 12.0,
            users: 300,
            zipf_s: 1.0,
            pro_fraction: 0.2,
            load: 1.3,
            left_idle_fraction: 0.35,
        }
    }
}

/// The pod trace as notebook sessions: each GPU pod created in the last `days` becomes a
/// session of its held time, dealt to seeded synthetic users by a Zipf law (the trace has no
/// user column), with seeded busy and idle phases. The GPU count is set so that the offered
/// load matches `params.load`.
pub fn from_trace(pods: &[TracePod], params: &TraceParams, seed: u64) -> Workload {
    let root = Rng::new(seed);
    let last = pods.iter().map(|pod| pod.creation_s).fold(0.0, f64::max);
    let start = last - params.days * DAY;
    let mut users_rng = root.fork(1);
    let users: Vec<SimUser> = (0..params.users)
        .map(|idx| SimUser {
            name: format!("user{idx}"),
            tier: if users_rng.chance(params.pro_fraction) {
                SimTier::Pro
            } else {
                SimTier::Free
            },
            heavy: false,
        })
        .collect();
    let weights: Vec<f64> = (0..params.users)
        .map(|rank| 1.0 / ((rank + 1) as f64).powf(params.zipf_s))
        .collect();
    let total_weight: f64 = weights.iter().sum();
    let mut deal_rng = root.fork(2);
    let mut phase_rng = root.fork(3);
    let mut sessions = Vec::new();
    for pod in pods.iter().filter(|pod| pod.creation_s >= start) {
        let mut pick = deal_rng.uniform(0.0, total_weight);
        let mut user = 0;
        while user + 1 < weights.len() && pick >= weights[user] {
            pick -= weights[user];
            user += 1;
        }
        let held = pod.held_s.max(60.0);
        let (active, tail) = if phase_rng.chance(params.left_idle_fraction) {
            (held * 0.6, held * 0.4)
        } else {
            (held, 1.0)
        };
        let (busy_mean, idle_mean) = if held > 6.0 * HOUR {
            (45.0 * MINUTE, 8.0 * MINUTE)
        } else {
            (5.0 * MINUTE, 10.0 * MINUTE)
        };
        let gpus = match users[user].tier {
            SimTier::Free => 1,
            SimTier::Pro => pod.gpus.min(2),
        };
        sessions.push(SessionPlan {
            user,
            arrive_s: pod.creation_s - start,
            gpus,
            phases: phases(&mut phase_rng, active, busy_mean, idle_mean, tail),
        });
    }
    sessions.sort_by(|a, b| a.arrive_s.total_cmp(&b.arrive_s).then(a.user.cmp(&b.user)));
    let warmup = params.warmup_days * DAY;
    let horizon = params.days * DAY;
    let mut workload = Workload {
        name: format!("openb trace, last {} days (seed {seed})", params.days),
        gpus: 1,
        warmup_s: warmup,
        horizon_s: horizon,
        end_s: horizon + params.drain_hours * HOUR,
        users,
        sessions,
        chains: Vec::new(),
    };
    let demand: f64 = workload.planned_demand().iter().sum();
    workload.gpus = ((demand / ((horizon - warmup) * params.load)).round() as u32).max(1);
    let demand = workload.planned_demand();
    let mut ranked: Vec<usize> = (0..workload.users.len()).collect();
    ranked.sort_by(|a, b| demand[*b].total_cmp(&demand[*a]));
    for user in ranked.iter().take(top_count(workload.users.len())) {
        workload.users[*user].heavy = true;
    }
    workload
}

/// How many users make the top 1 % (at least one).
pub fn top_count(users: usize) -> usize {
    ((users as f64) * 0.01).round().max(1.0) as usize
}
