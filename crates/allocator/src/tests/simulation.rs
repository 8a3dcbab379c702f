//! Seeded random simulations: invariants after every step.
