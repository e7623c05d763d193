//! `cdq images`: the image each selected service runs, for the chosen set and architecture.

use crate::context::Context;
use crate::ui::Ui;

pub fn run(ctx: Context, ui: &Ui, json: bool) -> anyhow::Result<i32> {
    let list = ctx.images()?;
    if json {
        let m: serde_json::Map<String, serde_json::Value> = list
            .iter()
            .map(|(k, v)| (k.name().to_string(), serde_json::Value::String(v.clone())))
            .collect();
        ui.out(serde_json::to_string_pretty(
            &serde_json::json!({"arch": ctx.arch.name(), "images": m}),
        )?);
    } else {
        for (_, img) in list {
            ui.out(img);
        }
    }
    Ok(0)
}
