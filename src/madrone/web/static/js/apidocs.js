// The API page: /api/openapi.json rendered as a list of endpoints, each with its parameters,
// request body and responses. Built with madrone.el only (text nodes, never HTML), so the
// doc's text is shown as it is and nothing in it runs.
"use strict";

(function () {
  const { api, el, say } = window.madrone;
  const METHODS = ["get", "post", "put", "patch", "delete"];

  // The last part of a "$ref" (#/components/schemas/Job -> Job).
  function refName(ref) {
    return ref.split("/").pop();
  }

  // A short text for a schema: its $ref name, type, or the choices of a oneOf.
  function schemaText(schema) {
    if (!schema) return "";
    if (schema.$ref) return refName(schema.$ref);
    if (schema.oneOf) return schema.oneOf.map(schemaText).join(" | ");
    if (schema.type === "array") return `array of ${schemaText(schema.items || {})}`;
    return schema.format ? `${schema.type} (${schema.format})` : schema.type || "object";
  }

  function resolve(doc, item) {
    if (item && item.$ref) {
      const parts = item.$ref.replace(/^#\//, "").split("/");
      return parts.reduce((node, part) => (node ? node[part] : undefined), doc) || {};
    }
    return item || {};
  }

  function parametersTable(parameters) {
    if (!parameters.length) return null;
    return el("table", { class: "apidocs-parameters" },
      el("thead", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"),
        el("th", {}, "type"), el("th", {}, "description"))),
      el("tbody", {}, parameters.map((p) => el("tr", {},
        el("td", {}, el("code", {}, p.name), p.required ? " (required)" : ""),
        el("td", {}, p.in), el("td", {}, schemaText(p.schema)),
        el("td", {}, p.description || "")))));
  }

  function requestBody(doc, body) {
    if (!body) return null;
    const content = body.content || {};
    return el("div", { class: "apidocs-body" }, el("h4", {}, "Request body"),
      el("ul", {}, Object.entries(content).map(([type, media]) => {
        const schema = media.schema || {};
        const fields = resolve(doc, schema).properties || {};
        return el("li", {}, el("code", {}, type), ": ", schemaText(schema),
          Object.keys(fields).length
            ? el("ul", {}, Object.entries(fields).map(([name, field]) =>
              el("li", {}, el("code", {}, name), ` ${schemaText(field)}`,
                field.description ? ` — ${field.description}` : "")))
            : null);
      })));
  }

  function responses(doc, all) {
    return el("div", { class: "apidocs-responses" }, el("h4", {}, "Responses"),
      el("ul", {}, Object.entries(all || {}).map(([status, response]) => {
        const resolved = resolve(doc, response);
        const types = Object.entries(resolved.content || {}).map(
          ([type, media]) => `${type} ${schemaText(media.schema)}`.trim());
        return el("li", { dataset: { status } }, el("strong", {}, status), " ",
          resolved.description || "", types.length ? ` (${types.join(", ")})` : "");
      })));
  }

  function operationCard(doc, path, method, operation, server) {
    const id = `op-${method}-${path.replace(/[^A-Za-z0-9]+/g, "-")}`;
    const full = (server || "") + path;
    return el("section", { class: "card apidocs-operation", id, dataset: { method, path: full } },
      el("h3", {}, el("span", { class: `apidocs-method apidocs-${method}` }, method.toUpperCase()),
        " ", el("code", {}, full)),
      el("p", {}, operation.summary || ""),
      operation.description ? el("p", { class: "apidocs-description" }, operation.description) : null,
      parametersTable(operation.parameters || []),
      operation.requestBody ? requestBody(doc, resolve(doc, operation.requestBody)) : null,
      responses(doc, operation.responses));
  }

  function render(doc) {
    const title = doc.info ? `${doc.info.title} ${doc.info.version}` : "REST API";
    window.document.getElementById("apidocs-title").textContent = title;
    const base = (doc.servers && doc.servers[0] && doc.servers[0].url) || "";
    const index = window.document.getElementById("apidocs-index");
    const container = window.document.getElementById("apidocs");
    const links = [];
    for (const [path, item] of Object.entries(doc.paths || {})) {
      const server = item.servers && item.servers[0] ? item.servers[0].url : base;
      for (const method of METHODS) {
        if (!item[method]) continue;
        const card = operationCard(doc, path, method, item[method], server);
        container.append(card);
        links.push(el("li", {}, el("a", { href: `#${card.id}` },
          `${method.toUpperCase()} ${server}${path}`)));
      }
    }
    index.append(el("ul", {}, links));
    say("apidocs-status", `${links.length} operations`);
  }

  api("GET", "/api/openapi.json")
    .then(render)
    .catch((error) => say("apidocs-status", `Cannot load the API doc: ${error.message}`, true));
})();
