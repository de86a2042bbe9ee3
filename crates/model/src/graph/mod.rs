//! The twin graph: interfaces (inheritance, relationship targets) and instances (named
//! relationships), with validation and the graph API's JSON.

mod instance;
mod interface;

pub use instance::{
    GraphJson, GraphNode, IncomingRelationship, InstanceGraph, InstanceNode, InstanceProblem,
};
pub use interface::{InterfaceGraph, InterfaceProblem};
