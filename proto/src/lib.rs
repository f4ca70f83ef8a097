//! gRPC definitions (the AgentLink and Control services land with the manager issue).
