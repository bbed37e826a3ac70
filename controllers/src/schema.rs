//! JSON Schemas of the status fields whose types come from elsewhere (time, the agent's
//! API), for the OpenAPI document. The daemon's OpenAPI test checks real responses against
//! them, so they cannot drift from what is served unnoticed.

use schemars::{json_schema, Schema, SchemaGenerator};

pub(crate) fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time"})
}

pub(crate) fn optional_date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "format": "date-time"})
}

/// `steward_agent::api::HostInfo`, or null before the agent was asked.
pub(crate) fn host_info(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "What the server's agent reports about its host.",
        "type": ["object", "null"],
        "required": ["hostname", "computerName", "os", "agentVersion"],
        "properties": {
            "hostname": {"type": "string"},
            "computerName": {"type": "string", "description": "NetBIOS-style name: first label, uppercase."},
            "os": {"type": "string"},
            "agentVersion": {"type": "string"}
        }
    })
}

/// `steward_agent::api::ServiceStatus`, or null when not installed.
pub(crate) fn agent_service_status(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "The agent's view of the service process.",
        "enum": ["running", "stopped", "failed", "installing", null]
    })
}
