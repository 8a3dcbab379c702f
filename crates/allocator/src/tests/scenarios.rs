//! Scripted scenarios: one script in, the decisions out.

use expect_test::expect;

use super::check_decisions;

#[test]
fn requests_are_placed_until_gpus_run_out_then_queued() {
    check_decisions(
        r"
        gpus 2
        0 start r1 alice free 1
        0 start r2 bob free 1
        10s start r3 carol free 1
        11s start r4 dave free 1
        20s exit r1
        ",
        expect![[r#"
            0s start r1 alice free 1: place r1 gpus=[0]
            0s start r2 bob free 1: place r2 gpus=[1]
            10s start r3 carol free 1: queue r3 #1 by 14400s
            11s start r4 dave free 1: queue r4 #2 by 14400s
            20s exit r1: place r3 gpus=[0]; moved r4 #1 by 14400s
        "#]],
    );
}

#[test]
fn cpu_only_kernels_are_placed_without_gpus() {
    check_decisions(
        r"
        gpus 1
        0 start r1 alice free 1
        0 start r2 alice free 0
        0 start r3 bob free 0
        ",
        expect![[r#"
            0s start r1 alice free 1: place r1 gpus=[0]
            0s start r2 alice free 0: place r2 gpus=[]
            0s start r3 bob free 0: place r3 gpus=[]
        "#]],
    );
}

#[test]
fn users_who_used_less_recently_go_first() {
    check_decisions(
        r"
        gpus 1
        0 start r1 heavy free 1
        0 busy r1
        50m start r2 heavy free 1
        55m start r3 newcomer free 1
        1h exit r1
        ",
        expect![[r#"
            0s start r1 heavy free 1: place r1 gpus=[0]
            0s busy r1: -
            3000s start r2 heavy free 1: queue r2 #1 by 14400s
            3300s start r3 newcomer free 1: queue r3 #1 by 14400s; moved r2 #2
            3600s exit r1: place r3 gpus=[0]; moved r2 #1 by 18000s
        "#]],
    );
}

#[test]
fn pro_weight_divides_decayed_usage() {
    check_decisions(
        r"
        gpus 2
        0 start r1 freeuser free 1
        0 start r2 prouser pro 1
        0 busy r1
        0 busy r2
        30m start r3 other free 1
        40m start r4 prouser pro 1
        41m start r5 freeuser free 1
        1h exit r1
        ",
        expect![[r#"
            0s start r1 freeuser free 1: place r1 gpus=[0]
            0s start r2 prouser pro 1: place r2 gpus=[1]
            0s busy r1: -
            0s busy r2: -
            1800s start r3 other free 1: queue r3 #1 by 14400s
            2400s start r4 prouser pro 1: queue r4 #2 by 28800s
            2460s start r5 freeuser free 1: queue r5 #3
            3600s exit r1: place r3 gpus=[0]; moved r4 #1 by 18000s; moved r5 #2 by 28800s
        "#]],
    );
}

#[test]
fn idle_gpu_is_reclaimed_after_warning_when_someone_under_share_waits() {
    check_decisions(
        r"
        gpus 1
        0 start r1 alice free 1
        0 busy r1
        5m idle r1
        6m start r2 bob free 1
        1h tick
        ",
        expect![[r#"
            0s start r1 alice free 1: place r1 gpus=[0]
            0s busy r1: -
            300s idle r1: -
            360s start r2 bob free 1: queue r2 #1 by 14400s
            840s tick: warn r1 idle_reclaim at=900s
            900s tick: reclaim r1 idle_contended gpus=[0]; place r2 gpus=[0]
            1440s tick: warn r2 idle_reclaim at=1500s
        "#]],
    );
}

#[test]
fn busy_kernel_is_never_reclaimed_and_activity_voids_the_warning() {
    check_decisions(
        r"
        gpus 1
        0 start r1 alice free 1
        1m start r2 bob free 1
        9m30s busy r1
        20m idle r1
        29m20s busy r1
        1h idle r1
        1h30m tick
        ",
        expect![[r#"
            0s start r1 alice free 1: place r1 gpus=[0]
            60s start r2 bob free 1: queue r2 #1 by 14400s
            540s tick: warn r1 idle_reclaim at=600s
            570s busy r1: -
            1200s idle r1: -
            1740s tick: warn r1 idle_reclaim at=1800s
            1760s busy r1: -
            3600s idle r1: -
            4140s tick: warn r1 idle_reclaim at=4200s
            4200s tick: reclaim r1 idle_contended gpus=[0]; place r2 gpus=[0]
            4740s tick: warn r2 idle_reclaim at=4800s
        "#]],
    );
}

#[test]
fn idle_gpus_are_kept_when_nobody_waits() {
    check_decisions(
        r"
        gpus 2
        0 start r1 alice pro 1
        0 start r2 bob pro 1
        3h start r3 carol free 0
        3h30m exit r2
        ",
        expect![[r#"
            0s start r1 alice pro 1: place r1 gpus=[0]
            0s start r2 bob pro 1: place r2 gpus=[1]
            1740s tick: warn r1 idle_reclaim at=1800s; warn r2 idle_reclaim at=1800s
            10800s start r3 carol free 0: place r3 gpus=[]
            12600s exit r2: -
        "#]],
    );
}

#[test]
fn kernels_stop_at_their_lifetime_after_a_warning() {
    check_decisions(
        r"
        gpus 1
        0 start r1 alice pro 1
        0 busy r1
        1m start r2 bob free 0
        9h tick
        ",
        expect![[r#"
            0s start r1 alice pro 1: place r1 gpus=[0]
            0s busy r1: -
            60s start r2 bob free 0: place r2 gpus=[]
            28200s tick: warn r1 lifetime at=28800s
            28800s tick: stop r1 lifetime_reached
        "#]],
    );
}

#[test]
fn kernels_stop_when_the_weekly_quota_runs_out_and_new_requests_are_refused() {
    check_decisions(
        r"
        gpus 2
        0 start r1 alice free 1
        0 start r2 alice free 1
        0 busy r1
        0 busy r2
        2h tick
        2h start r3 alice free 1
        7d tick
        7d1h start r4 alice free 1
        ",
        expect![[r#"
            0s start r1 alice free 1: place r1 gpus=[0]
            0s start r2 alice free 1: place r2 gpus=[1]
            0s busy r1: -
            0s busy r2: -
            3599.750s tick: stop r1 gpu_quota_exhausted; stop r2 gpu_quota_exhausted
            7200s start r3 alice free 1: refuse r3 gpu_quota_exhausted retry_at=606599.750s
            608400s start r4 alice free 1: place r4 gpus=[0]
        "#]],
    );
}

#[test]
fn usage_from_the_ledger_counts_against_quota_and_order() {
    check_decisions(
        r"
        gpus 1
        2h ledger alice free 0 1h 1
        2h ledger carol free 0 2h 1
        2h start r0 bob free 1
        2h start r1 alice free 1
        2h start r2 dave free 1
        2h start r3 carol free 1
        ",
        expect![[r#"
            7200s ledger alice free 0 1h 1: -
            7200s ledger carol free 0 2h 1: -
            7200s start r0 bob free 1: place r0 gpus=[0]
            7200s start r1 alice free 1: queue r1 #1 by 21600s
            7200s start r2 dave free 1: queue r2 #1 by 21600s; moved r1 #2
            7200s start r3 carol free 1: refuse r3 gpu_quota_exhausted retry_at=608400s
        "#]],
    );
}

#[test]
fn tier_caps_refuse_with_stable_codes() {
    check_decisions(
        r"
        gpus 8
        0 start r1 alice free 2
        0 start r2 alice free 1
        0 start r3 alice free 1
        0 start r4 alice free 1
        0 start r5 bob gold 1
        0 start r6 carol pro 9
        0 start r2 carol pro 1
        ",
        expect![[r#"
            0s start r1 alice free 2: refuse r1 gpus_per_kernel_exceeded
            0s start r2 alice free 1: place r2 gpus=[0]
            0s start r3 alice free 1: place r3 gpus=[1]
            0s start r4 alice free 1: refuse r4 kernels_max_reached
            0s start r5 bob gold 1: refuse r5 unknown_tier
            0s start r6 carol pro 9: refuse r6 not_enough_gpus
            0s start r2 carol pro 1: refuse r2 duplicate_request
        "#]],
    );
}

#[test]
fn fifo_blocks_behind_the_head_of_the_queue() {
    check_decisions(
        r"
        policy fifo
        gpus 2
        0 start r1 alice pro 1
        1s start r2 bob pro 2
        2s start r3 carol free 1
        10m exit r1
        ",
        expect![[r#"
            0s start r1 alice pro 1: place r1 gpus=[0]
            1s start r2 bob pro 2: queue r2 #1
            2s start r3 carol free 1: queue r3 #2
            600s exit r1: place r2 gpus=[0,1]; moved r3 #1
        "#]],
    );
}

#[test]
fn fair_share_backfills_small_requests_until_the_head_has_waited_long() {
    check_decisions(
        r"
        gpus 2
        0 start r1 alice pro 1
        0 busy r1
        1s start r2 bob pro 2
        2s start r3 carol free 1
        3s start r4 dave free 1
        4s exit r3
        20m exit r4
        20m start r5 erin free 1
        30m exit r1
        ",
        expect![[r#"
            0s start r1 alice pro 1: place r1 gpus=[0]
            0s busy r1: -
            1s start r2 bob pro 2: queue r2 #1 by 28800s
            2s start r3 carol free 1: place r3 gpus=[1]
            3s start r4 dave free 1: queue r4 #2
            4s exit r3: place r4 gpus=[1]
            544s tick: warn r4 idle_reclaim at=604s
            1200s exit r4: -
            1200s start r5 erin free 1: queue r5 #2
            1800s exit r1: place r2 gpus=[0,1]; moved r5 #1 by 30600s
        "#]],
    );
}

#[test]
fn colab_like_refuses_when_full_and_stops_idle_kernels_whether_or_not_anyone_waits() {
    check_decisions(
        r"
        policy colab_like
        gpus 1
        0 start r1 alice free 1
        1m start r2 bob free 1
        3h tick
        ",
        expect![[r#"
            0s start r1 alice free 1: place r1 gpus=[0]
            60s start r2 bob free 1: refuse r2 no_gpu_available
            600s tick: reclaim r1 idle_timeout gpus=[0]
        "#]],
    );
}

#[test]
fn slurm_fair_share_never_reclaims_idle_gpus() {
    check_decisions(
        r"
        policy slurm_fair_share
        gpus 1
        0 start r1 alice free 1
        1m start r2 bob free 1
        3h exit r1
        ",
        expect![[r#"
            0s start r1 alice free 1: place r1 gpus=[0]
            60s start r2 bob free 1: queue r2 #1 by 14400s
            10800s exit r1: place r2 gpus=[0]
        "#]],
    );
}

#[test]
fn removed_gpus_are_reclaimed_and_added_ones_used() {
    check_decisions(
        r"
        gpus 2
        0 start r1 alice free 1
        0 start r2 bob free 1
        1m start r3 carol free 1
        2m gpus 1
        3m gpus 3
        ",
        expect![[r#"
            0s start r1 alice free 1: place r1 gpus=[0]
            0s start r2 bob free 1: place r2 gpus=[1]
            60s start r3 carol free 1: queue r3 #1 by 14400s
            120s gpus 1: reclaim r2 gpu_removed gpus=[1]
            180s gpus 3: place r3 gpus=[1]
        "#]],
    );
}
