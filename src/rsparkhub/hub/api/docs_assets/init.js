// Starts Swagger UI on /api/docs from the assets the package ships (no CDN, no inline
// script: the page keeps the hub's script-src 'self' policy).
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
