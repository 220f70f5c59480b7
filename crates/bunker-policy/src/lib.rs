//! bunker-policy
