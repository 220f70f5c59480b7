//! bunker-daemon
