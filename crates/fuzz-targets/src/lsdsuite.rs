//! The LSDSuite command port.

use bosun_ingress::inputs::Input;
use bosun_ingress::lsdsuite::{self, Plan};
use bosun_ingress::ops;

use crate::{check, steward};

/// The bytes of one command connection, read as the port reads them (64 KiB at most);
/// a command that is accepted must make a valid message to this node.
pub fn command(data: &[u8]) {
    let Ok(Input::Json(request)) = steward::read(data, data.len().max(1), 64 * 1024) else {
        return;
    };
    match lsdsuite::plan(&request) {
        Ok(Plan::Status) => {}
        Ok(Plan::Send { method, data }) => {
            let m = ops::message("n1", method, data);
            if let Err(e) = m.validate() {
                panic!("the command {request} made the invalid message {m:?}: {e}");
            }
            check::message(&m);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
