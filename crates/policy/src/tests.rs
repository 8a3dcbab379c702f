//! Tests of the policy engine: data in, snapshot out.
