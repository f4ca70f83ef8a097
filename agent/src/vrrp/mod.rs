//! The VRRP protocol core: pure, no I/O, no clock reads, no randomness.

pub mod fsm;
pub mod instance;
pub mod packet;
pub mod timers;
