// Starts Swagger UI on the generated OpenAPI document of this gateway. No network beyond
// this origin: the validator badge (which would call an outside service) is off, and
// "Try it out" sends requests to this same gateway (a token goes in "Authorize").
window.addEventListener('DOMContentLoaded', () => {
  window.ui = window.SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    // No "Try it out" against another server than this one, and nothing kept between visits.
    persistAuthorization: false,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
  });
});
