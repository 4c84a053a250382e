//! The OpenAPI document (`GET /openapi.json`) and interactive docs (`GET /docs`), whose assets
//! are compiled into the binary so they render without internet access.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;

/// Adds the bearer scheme to the document.
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The `access_token` from `POST /v1/auth/login`."))
                    .build(),
            ),
        );
    }
}

/// The document exactly as committed in `openapi/openapi.json`.
pub fn render(api: &OpenApi) -> String {
    let mut text = serde_json::to_string_pretty(api).expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

/// `/openapi.json` and `/docs`.
pub fn router(api: OpenApi) -> Router<AppState> {
    let document = render(&api);
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        document,
                    )
                        .into_response()
                }
            }),
        )
        .merge(
            SwaggerUi::new("/docs")
                // No validator badge: Swagger UI would send the document's address to
                // validator.swagger.io from every browser that opens the docs.
                .config(
                    utoipa_swagger_ui::Config::from("/openapi.json")
                        .try_it_out_enabled(true)
                        .validator_url("none"),
                ),
        )
}
