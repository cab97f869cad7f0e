// The API browser (docs.html): renders /openapi.json and sends requests from the page.
"use strict";
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
};
// Descriptions are CommonMark (OpenAPI says so); ours use inline code only. Built as
// nodes, never as HTML, so a description cannot inject markup.
const markdown = (text) => {
  const span = el("span");
  for (const part of String(text ?? "").split(/(`[^`]+`)/)) {
    if (/^`[^`]+`$/.test(part)) span.append(el("code", {}, part.slice(1, -1)));
    else if (part) span.append(part);
  }
  return span;
};
const token = document.getElementById("token");
token.value = sessionStorage.getItem("agora-session") || "";
token.addEventListener("input", () => sessionStorage.setItem("agora-session", token.value.trim()));

let spec;
const resolve = (s) => {
  let seen = 0;
  while (s && s.$ref && seen++ < 20) s = s.$ref.split("/").slice(1).reduce((o, k) => o && o[k], spec);
  return s || {};
};
const typeOf = (s) => {
  if (s && s.$ref) return s.$ref.split("/").pop();
  s = resolve(s);
  if (s.oneOf || s.anyOf) return (s.oneOf || s.anyOf).map(typeOf).join(" | ");
  let t = Array.isArray(s.type) ? s.type.join(" | ") : (s.type || (s.properties ? "object" : "any"));
  if (s.type === "array" || (Array.isArray(s.type) && s.type.includes("array"))) t = typeOf(s.items) + "[]";
  if (s.enum) t = s.enum.map((v) => JSON.stringify(v)).join(" | ");
  return t;
};
const rules = (s) => {
  s = resolve(s);
  const r = [];
  if (s.minimum !== undefined) r.push("≥ " + s.minimum);
  if (s.maximum !== undefined) r.push("≤ " + s.maximum);
  if (s.minLength !== undefined) r.push("length ≥ " + s.minLength);
  if (s.maxLength !== undefined) r.push("length ≤ " + s.maxLength);
  if (s.maxItems !== undefined) r.push("at most " + s.maxItems + " items");
  if (s.default !== undefined) r.push("default " + JSON.stringify(s.default));
  return r.join(", ");
};
const example = (s, depth = 0) => {
  s = resolve(s);
  if (depth > 6) return null;
  if (s.examples && s.examples.length) return s.examples[0];
  if (s.example !== undefined) return s.example;
  if (s.default !== undefined) return s.default;
  if (s.enum) return s.enum[0];
  if (s.oneOf || s.anyOf) return example((s.oneOf || s.anyOf)[0], depth + 1);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (type === "object" || s.properties) {
    const o = {};
    for (const [k, v] of Object.entries(s.properties || {})) o[k] = example(v, depth + 1);
    return o;
  }
  if (type === "array") return [example(s.items || {}, depth + 1)];
  if (type === "integer" || type === "number") return s.minimum !== undefined ? s.minimum : 1;
  if (type === "boolean") return true;
  if (type === "string") return "";
  return null;
};
const schemaTable = (s) => {
  s = resolve(s);
  if (!s.properties) return el("p", {}, el("code", {}, typeOf(s)));
  const required = new Set(s.required || []);
  const rows = Object.entries(s.properties).map(([name, p]) => el("tr", {},
    el("td", {}, el("code", {}, name), required.has(name) ? " *" : ""),
    el("td", {}, el("code", {}, typeOf(p))),
    el("td", {}, markdown(resolve(p).description), rules(p) ? el("div", { class: "summary" }, rules(p)) : null)));
  return el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "meaning")), ...rows);
};

function operation(path, method, op) {
  const secured = (op.security || []).length > 0;
  const params = (op.parameters || []);
  const inputs = {};
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", {}, markdown(op.description)));
  if (params.length) {
    body.append(el("h4", {}, "Parameters"));
    const rows = params.map((p) => {
      const input = el("input", { placeholder: String(example(p.schema) ?? "") });
      if (p.example !== undefined) input.value = p.example;
      inputs[p.in + ":" + p.name] = { p, input };
      return el("tr", { class: "try" },
        el("td", {}, el("code", {}, p.name), p.required ? " *" : ""),
        el("td", {}, p.in),
        el("td", {}, el("code", {}, typeOf(p.schema)), rules(p.schema) ? el("div", { class: "summary" }, rules(p.schema)) : null),
        el("td", {}, markdown(p.description), input));
    });
    body.append(el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "meaning / value")), ...rows));
  }
  let textarea = null;
  const json = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  if (json) {
    body.append(el("h4", {}, "Request body (JSON)"), schemaTable(json.schema));
    textarea = el("textarea", {}, JSON.stringify(example(json.schema), null, 2));
    body.append(textarea);
  }
  body.append(el("h4", {}, "Responses"));
  body.append(el("table", {}, ...Object.entries(op.responses || {}).map(([status, r]) => {
    r = resolve(r);
    const c = r.content && r.content["application/json"];
    return el("tr", {}, el("td", {}, el("code", {}, status)), el("td", {}, markdown(r.description)),
      el("td", {}, c ? el("code", {}, typeOf(c.schema)) : ""));
  })));
  const out = el("div");
  const send = async () => {
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    for (const { p, input } of Object.values(inputs)) {
      const v = input.value.trim();
      if (!v) continue;
      if (p.in === "path") url = url.replace("{" + p.name + "}", encodeURIComponent(v));
      else if (p.in === "query") for (const part of v.split(",")) query.append(p.name, part.trim());
      else if (p.in === "header") headers[p.name] = v;
    }
    if ([...query].length) url += "?" + query;
    if (token.value.trim()) headers["Authorization"] = "Bearer " + token.value.trim();
    const init = { method: method.toUpperCase(), headers };
    if (textarea) { headers["Content-Type"] = "application/json"; init.body = textarea.value; }
    out.replaceChildren("…");
    try {
      const res = await fetch(url, init);
      const text = await res.text();
      let shown = text;
      try { const v = JSON.parse(text); shown = JSON.stringify(v, null, 2); if (v && v.session) { token.value = v.session; sessionStorage.setItem("agora-session", v.session); } } catch (_) {}
      out.replaceChildren(
        el("div", {}, el("span", { class: "status " + (res.ok ? "ok" : "bad") }, res.status + " " + res.statusText), " ", el("code", {}, init.method + " " + url)),
        el("pre", {}, shown || "(no body)"));
    } catch (e) {
      out.replaceChildren(el("pre", { class: "bad" }, String(e)));
    }
  };
  body.append(el("p", {}, el("button", { onclick: send }, "Send")), out);
  const id = (method + path).replace(/[^a-z0-9]+/gi, "-");
  return el("details", { class: "op", id },
    el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()), el("span", { class: "path" }, path),
      el("span", { class: "summary" }, markdown(op.summary)), secured ? el("span", { class: "lock" }, "needs a session") : null),
    body);
}

fetch("openapi.json").then((r) => r.json()).then((s) => {
  spec = s;
  document.title = s.info.title;
  document.getElementById("title").textContent = s.info.title + " " + (s.info.version || "");
  document.getElementById("description").replaceChildren(markdown(s.info.description));
  const byTag = new Map((s.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(s.paths || {}))
    for (const method of ["get", "post", "put", "patch", "delete"])
      if (item[method]) {
        const tag = (item[method].tags || ["other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push([path, method, item[method]]);
      }
  const list = document.getElementById("list");
  const nav = document.getElementById("nav");
  list.replaceChildren();
  for (const [tag, ops] of byTag) {
    if (!ops.length) continue;
    const info = (s.tags || []).find((t) => t.name === tag);
    nav.append(el("h3", {}, tag));
    list.append(el("h2", {}, tag), info && info.description ? el("p", { class: "summary" }, markdown(info.description)) : "");
    for (const [path, method, op] of ops) {
      const node = operation(path, method, op);
      list.append(node);
      nav.append(el("a", { href: "#" + node.id, onclick: () => { node.open = true; } }, method.toUpperCase() + " " + path));
    }
  }
  // A link to #method-path opens that operation.
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target) { target.open = true; target.scrollIntoView(); }
}).catch((e) => {
  document.getElementById("list").replaceChildren(el("div", { class: "error" }, "Could not load openapi.json: " + e));
});
