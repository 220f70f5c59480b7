//! bunker-dr
