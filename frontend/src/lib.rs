//! The browser entry point: hydrates the server-rendered page and lets lazy routes load their own chunks.

/// Called by the generated JS once the main WASM module is loaded.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_lazy(app::App);
}
