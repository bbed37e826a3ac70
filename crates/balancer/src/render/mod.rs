//! One renderer per vendor. Each is a pure function of [`crate::Farms`] and gives the
//! same bytes for the same farms, so unchanged desired state rewrites nothing.

pub mod arr;
pub mod as3;
pub mod haproxy;
pub mod nitro;
mod write;

pub use write::{write_if_changed, Written};

use steward_model::resource::LbVendor;

use crate::{BalancerError, Farms};

/// The file a rendered vendor's configuration goes to, and its content.
pub fn rendered(farms: &Farms) -> Result<Option<(&'static str, String)>, BalancerError> {
    Ok(match farms.vendor {
        LbVendor::Haproxy => None,
        LbVendor::Arr => Some(("applicationHost.webFarms.config", arr::render(farms))),
        LbVendor::CitrixAdc => Some(("nitro.json", nitro::render(farms)?)),
        LbVendor::F5 => Some(("as3.json", as3::render(farms)?)),
    })
}
