//! Installing ktwin on a cluster: the values of an installation, the bundle of objects they
//! yield, the Helm chart generated from the same code, and applying the bundle.

pub mod apply;
pub mod bundle;
pub mod chart;
pub mod values;

pub use bundle::{BundleObject, OPERATOR_NAME, install_bundle, operator_rules, to_yaml_stream};
pub use values::{DEFAULT_OPERATOR_NAMESPACE, DEFAULT_WORLD_NAMESPACE, InstallValues};
