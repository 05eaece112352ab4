//! `repro.*`: git equals host. (Being written; see issue 5.)

use crate::DynCheck;

pub fn checks() -> Vec<DynCheck> {
    vec![]
}
