//! The manager link: the agent's side of `AgentLink.Session`.
//!
//! - [`bridge`]: the messages between the engine and the link task (the contract).

pub mod bridge;
