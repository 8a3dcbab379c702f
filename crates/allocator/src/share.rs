//! Weighted max-min fair shares ("water filling") of a capacity among claims.

/// One claimant's weight and demand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShareClaim {
    /// Positive weight.
    pub weight: f64,
    /// What the claimant wants, in the capacity's units.
    pub demand: f64,
}

/// Shares of `capacity` by weighted max-min fairness: each claim gets
/// `min(demand, weight * level)`, with the level chosen so that the shares add up to
/// `min(capacity, total demand)`. Nobody gets more than they want, and what someone does not
/// want is shared among the others in proportion to their weights.
pub fn water_fill(claims: &[ShareClaim], capacity: f64) -> Vec<f64> {
    let mut shares = vec![0.0; claims.len()];
    let mut order: Vec<usize> = (0..claims.len())
        .filter(|&idx| claims[idx].demand > 0.0 && claims[idx].weight > 0.0)
        .collect();
    order.sort_by(|&a, &b| {
        let ka = claims[a].demand / claims[a].weight;
        let kb = claims[b].demand / claims[b].weight;
        ka.total_cmp(&kb).then(a.cmp(&b))
    });
    let mut capacity_left = capacity.max(0.0);
    let mut weight_left: f64 = order.iter().map(|&idx| claims[idx].weight).sum();
    for (pos, &idx) in order.iter().enumerate() {
        let claim = claims[idx];
        let level = if weight_left > 0.0 {
            capacity_left / weight_left
        } else {
            0.0
        };
        if claim.demand / claim.weight <= level {
            shares[idx] = claim.demand;
            capacity_left -= claim.demand;
            weight_left -= claim.weight;
        } else {
            for &rest in &order[pos..] {
                shares[rest] = claims[rest].weight * level;
            }
            break;
        }
    }
    shares
}

/// The water level of [`water_fill`]: each claim's share is `min(demand, weight * level)`.
/// Infinite when the capacity covers every demand.
pub fn water_level(claims: &[ShareClaim], capacity: f64) -> f64 {
    let mut order: Vec<&ShareClaim> = claims
        .iter()
        .filter(|claim| claim.demand > 0.0 && claim.weight > 0.0)
        .collect();
    order.sort_by(|a, b| (a.demand / a.weight).total_cmp(&(b.demand / b.weight)));
    let mut capacity_left = capacity.max(0.0);
    let mut weight_left: f64 = order.iter().map(|claim| claim.weight).sum();
    for claim in order {
        let level = capacity_left / weight_left;
        if claim.demand / claim.weight <= level {
            capacity_left -= claim.demand;
            weight_left -= claim.weight;
        } else {
            return level;
        }
    }
    f64::INFINITY
}
