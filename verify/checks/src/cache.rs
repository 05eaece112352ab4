//! `cache.*`: a teardown leaves the probe's image in the store, and a warm redeploy pulls zero
//! layers. Both read the shared probe ([`crate::probe`]).

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{Check, Outcome};
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![
        Arc::new(ImageSurvivesTeardown),
        Arc::new(WarmRedeployZeroLayers),
    ]
}

struct ImageSurvivesTeardown;
#[async_trait]
impl Check<Ctx> for ImageSurvivesTeardown {
    fn id(&self) -> &'static str {
        "cache.image-survives-teardown"
    }
    fn title(&self) -> &'static str {
        "a probe service from redis:7-alpine, removed as a teardown removes it, leaves the image (same id) in the store"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        crate::probe::get(ctx).await.decide_survives_teardown()
    }
}

struct WarmRedeployZeroLayers;
#[async_trait]
impl Check<Ctx> for WarmRedeployZeroLayers {
    fn id(&self) -> &'static str {
        "cache.warm-redeploy-zero-layers"
    }
    fn title(&self) -> &'static str {
        "redeploying pulls zero layers (pull stream and daemon events) and converges"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        crate::probe::get(ctx).await.decide_warm_redeploy()
    }
}
