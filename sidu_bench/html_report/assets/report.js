// sidu-bench report page: renders the JSON block #report-data (no network, no library).
"use strict";

const DATA = JSON.parse(document.getElementById("report-data").textContent);
const PAGE_SIZE = 40;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const VERDICTS = {
  "better than reference": ["better", "verdict-better"],
  "worse than reference": ["worse", "verdict-worse"],
  "no significant difference": ["n.s.", "verdict-none"],
  "n too small": ["n too small", "verdict-small"],
  "n/a": ["n/a", "verdict-na"],
};

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  return Number(value).toFixed(digits);
}

function fmtP(value) {
  if (value === null || value === undefined) return "–";
  return value < 0.001 ? value.toExponential(1) : value.toFixed(4);
}

function rowKey(dataset, model) { return dataset + " / " + model; }

// ---- cross tables -------------------------------------------------------------------------

const ROWS = [];
const ROW_EXPLAINERS = {};
for (const cell of DATA.cells) {
  const key = rowKey(cell.dataset, cell.model);
  if (!(key in ROW_EXPLAINERS)) { ROW_EXPLAINERS[key] = []; ROWS.push([cell.dataset, cell.model]); }
  if (!ROW_EXPLAINERS[key].includes(cell.explainer)) ROW_EXPLAINERS[key].push(cell.explainer);
}
const EXPLAINERS = [...new Set(DATA.cells.map((cell) => cell.explainer))];
const CELL = new Map(DATA.cells.map((c) => [[c.dataset, c.model, c.explainer, c.metric].join("\u0000"), c]));
const COLOUR = Object.fromEntries(EXPLAINERS.map((name, i) => [name, PALETTE[i % PALETTE.length]]));

function sortTable(table, column, type) {
  const header = table.tHead.rows[0].cells[column];
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = [...body.rows];
  const keyOf = (row) => {
    const td = row.cells[column];
    if (type === "text") return td.textContent;
    const value = td.dataset.value;
    return value === undefined || value === "" ? NaN : Number(value);
  };
  rows.sort((a, b) => {
    const x = keyOf(a), y = keyOf(b);
    if (type === "text") return ascending ? x.localeCompare(y) : y.localeCompare(x);
    if (Number.isNaN(x) && Number.isNaN(y)) return 0;
    if (Number.isNaN(x)) return 1;
    if (Number.isNaN(y)) return -1;
    return ascending ? x - y : y - x;
  });
  body.append(...rows);
}

function sortableHeader(table, labels) {
  const row = el("tr");
  labels.forEach(([label, type], column) => {
    row.append(el("th", { class: type === "text" ? "text" : null, scope: "col", text: label,
      onclick: () => sortTable(table, column, type) }));
  });
  table.tHead.append(row);
}

function crossTable(metric) {
  const table = el("table", { class: "cross", "data-metric": metric.name });
  table.createTHead();
  sortableHeader(table, [["data set", "text"], ["model", "text"],
    ...EXPLAINERS.map((name) => [name, "number"])]);
  const body = table.createTBody();
  for (const [dataset, model] of ROWS) {
    const tr = el("tr", {}, el("td", { class: "text", text: dataset }),
      el("td", { class: "text", text: model }));
    for (const explainer of EXPLAINERS) {
      const cell = CELL.get([dataset, model, explainer, metric.name].join("\u0000"));
      if (!cell) { tr.append(el("td", { class: "missing", text: "" })); continue; }
      const td = el("td", {
        "data-dataset": dataset, "data-model": model, "data-explainer": explainer,
        "data-metric": metric.name, "data-value": cell.value === null ? "" : String(cell.value),
        "data-ci-low": cell.ci_low === null ? "" : String(cell.ci_low),
        "data-ci-high": cell.ci_high === null ? "" : String(cell.ci_high),
        "data-n": String(cell.n), class: cell.rank === 1 ? "best" : null,
      });
      td.append(el("span", { class: "value", text: fmt(cell.value, metric.name === "seconds_per_image" ? 4 : 3) }));
      if (cell.rank !== null) td.append(el("span", { class: "rank", text: String(cell.rank) }));
      const ci = cell.ci_low === null ? "" : `[${fmt(cell.ci_low)}, ${fmt(cell.ci_high)}] `;
      td.append(el("span", { class: "ci", text: `${ci}n=${cell.n}` }));
      tr.append(td);
    }
    body.append(tr);
  }
  return table;
}

function renderCrossTables() {
  const root = document.getElementById("cross-tables");
  for (const metric of DATA.metrics) {
    const direction = metric.higher_is_better === null ? "cost, lower is cheaper"
      : metric.higher_is_better ? "higher is better" : "lower is better";
    root.append(el("h3", { text: `${metric.name} (${direction})` }), crossTable(metric));
  }
}

// ---- verdict matrices ---------------------------------------------------------------------

function pairAgainst(dataset, model, metric, explainer, reference) {
  for (const pair of DATA.pairs) {
    if (pair.dataset !== dataset || pair.model !== model || pair.metric !== metric) continue;
    if (pair.explainer === explainer && pair.reference === reference) return [pair, false];
    if (pair.explainer === reference && pair.reference === explainer) return [pair, true];
  }
  return [null, false];
}

function flipped(verdict) {
  if (verdict === "better than reference") return "worse than reference";
  if (verdict === "worse than reference") return "better than reference";
  return verdict;
}

function renderVerdicts() {
  const root = document.getElementById("verdict-matrices");
  const compared = DATA.metrics.filter((metric) => metric.compared).map((metric) => metric.name);
  for (const [dataset, model] of ROWS) {
    const explainers = ROW_EXPLAINERS[rowKey(dataset, model)];
    const reference = explainers.find((label) => label.split(":")[0] === "sidu");
    root.append(el("h3", { text: `${dataset} × ${model}` + (reference ? ` (reference ${reference})` : "") }));
    if (!reference || !compared.length) {
      root.append(el("p", { class: "missing", text: "no reference explainer or no compared metric" }));
      continue;
    }
    const table = el("table", { class: "verdicts", "data-dataset": dataset, "data-model": model });
    table.createTHead();
    sortableHeader(table, [["explainer", "text"], ...compared.map((name) => [name, "text"])]);
    const body = table.createTBody();
    for (const explainer of explainers.filter((label) => label !== reference)) {
      const tr = el("tr", {}, el("td", { class: "text", text: explainer }));
      for (const metric of compared) {
        const [pair, reversed] = pairAgainst(dataset, model, metric, explainer, reference);
        if (!pair) { tr.append(el("td", { class: "verdict-na", text: "–" })); continue; }
        const verdict = reversed ? flipped(pair.verdict) : pair.verdict;
        const [text, style] = VERDICTS[verdict] || [verdict, "verdict-na"];
        const sign = reversed ? -1 : 1;
        const low = reversed ? -pair.diff_ci_high : pair.diff_ci_low;
        const high = reversed ? -pair.diff_ci_low : pair.diff_ci_high;
        const diff = pair.diff === null ? null : sign * pair.diff;
        const title = `${explainer} − ${reference}, ${metric}: ${fmt(diff, 4)} ` +
          `[${fmt(low, 4)}, ${fmt(high, 4)}], n=${pair.n}; p = ${fmtP(pair.p)}; ` +
          `Holm p = ${fmtP(pair.p_holm)} (all pairs of ${dataset} × ${model})`;
        const moved = unstableVerdict(dataset, model, explainer, reference, metric);
        tr.append(el("td", { class: `text ${style}`, "data-verdict": verdict,
          title: title + (moved ? "; changes with the map's temperature (§)" : ""),
          "data-p-holm": pair.p_holm === null ? "" : String(pair.p_holm),
          text: text + (moved ? " §" : "") }));
      }
      body.append(tr);
    }
    root.append(table);
  }
}

// ---- trust ----------------------------------------------------------------------------------

function trustOf(dataset, model, statistic) {
  return DATA.trust.filter((row) => row.dataset === dataset && row.model === model &&
    row.statistic === statistic);
}

function simpleTable(className, header, rows) {
  const table = el("table", { class: className });
  table.createTHead().append(el("tr", {}, ...header.map((name, i) =>
    el("th", { class: i === 0 ? "text" : null, text: name }))));
  const body = table.createTBody();
  for (const cells of rows) {
    body.append(el("tr", {}, ...cells.map((cell, i) => (cell instanceof Node ? cell
      : el("td", { class: i === 0 ? "text" : null, text: cell })))));
  }
  return table;
}

function unstableVerdict(dataset, model, explainer, reference, metric) {
  return trustOf(dataset, model, "temperature_kept").some((row) => row.metric === metric &&
    row.value === 0 && (row.other === `${explainer} vs ${reference}` ||
      row.other === `${reference} vs ${explainer}`));
}

function renderTrust() {
  const root = document.getElementById("trust-sections");
  if (!DATA.trust.length) {
    root.append(el("p", { class: "missing", text: "no trust section (no run folder to read)" }));
    return;
  }
  for (const [dataset, model] of ROWS) {
    root.append(el("h3", { text: `${dataset} × ${model}` }));
    const w = trustOf(dataset, model, "kendall_w")[0];
    const p = trustOf(dataset, model, "kendall_w_p")[0];
    if (w) {
      root.append(el("p", { class: "kendall", "data-w": String(w.value), text:
        `Kendall's W = ${fmt(w.value)} (permutation p = ${fmtP(p.value)}) over the metrics ` +
        `${w.metric.split("+").join(", ")} ranking ${w.other.split("+").join(", ")}.` }));
    }
    const spearman = trustOf(dataset, model, "spearman");
    if (spearman.length) {
      const names = [...new Set(spearman.flatMap((row) => [row.metric, row.other]))];
      const value = (a, b) => (a === b ? 1 : (spearman.find((row) =>
        (row.metric === a && row.other === b) || (row.metric === b && row.other === a)) || {}).value);
      root.append(simpleTable("spearman", ["Spearman", ...names], names.map((a) => [a,
        ...names.map((b) => {
          const v = value(a, b);
          const shade = v === null || v === undefined ? "#fff"
            : v >= 0 ? `rgba(33,102,172,${0.6 * v})` : `rgba(178,24,43,${-0.6 * v})`;
          return el("td", { style: `background:${shade}`, text: fmt(v, 2) });
        })])));
    }
    const halves = trustOf(dataset, model, "split_half_rho");
    if (halves.length) {
      const brown = trustOf(dataset, model, "split_half_spearman_brown");
      root.append(simpleTable("split-half", ["metric", "items", "mean rho", "Spearman-Brown",
        "spread over splits"], halves.map((row) => [row.metric, String(row.n), fmt(row.value),
        fmt((brown.find((b) => b.metric === row.metric) || {}).value),
        `${fmt(row.low)} to ${fmt(row.high)}`])));
    }
    const kept = trustOf(dataset, model, "temperature_kept");
    if (kept.length) {
      const variants = trustOf(dataset, model, "temperature");
      const names = [...new Set(variants.map((row) => row.metric))];
      root.append(simpleTable("temperature", ["pair", "verdict", ...names, "kept"],
        kept.map((row) => [row.other, row.verdict, ...names.map((name) =>
          (variants.find((v) => v.metric === name && v.other === row.other) || {}).verdict || "–"),
        row.value === 1 ? "yes" : "no §"])));
    }
    const sanity = trustOf(dataset, model, "sanity");
    if (sanity.length) {
      root.append(simpleTable("sanity",
        ["explainer", "check vs center", "difference", "n", "verdict", "outcome"],
        sanity.map((row) => [row.other, row.metric, `${fmt(row.value)} [${fmt(row.low)}, ` +
          `${fmt(row.high)}]`, String(row.n), row.verdict, row.outcome])));
    }
  }
}

// ---- figure, runs -------------------------------------------------------------------------

function renderFigure() {
  const root = document.getElementById("figure");
  if (DATA.figure) {
    root.append(el("img", { src: "data:image/png;base64," + DATA.figure,
      alt: "insertion AUC against seconds per image, per data set" }));
  } else {
    root.append(el("p", { class: "missing", text: "no figure (matplotlib is not installed)" }));
  }
}

function renderRuns() {
  const root = document.getElementById("run-list");
  DATA.runs.forEach((run) => {
    root.append(el("details", {},
      el("summary", { text: `${run.path}: ${run.dataset} × ${run.model}, sidu-bench ${run.version}, ` +
        `protocol ${run.protocol_id}, ${run.device}, ${run.backend}` }),
      el("h4", { text: "protocol" }), el("pre", { text: JSON.stringify(run.protocol, null, 2) }),
      el("h4", { text: "environment" }), el("pre", { text: JSON.stringify(run.environment, null, 2) })));
  });
  document.getElementById("protocols").textContent =
    `protocol id(s): ${DATA.protocol_ids.join(", ")} · ${DATA.runs.length} run folder(s) · ` +
    `${DATA.items.length} items`;
  if (DATA.mismatches.length) {
    const box = document.getElementById("mismatches");
    box.hidden = false;
    box.append(el("strong", { text: "Mixed protocols: " }), DATA.mismatches.join("; "));
  }
}

// ---- item browser -------------------------------------------------------------------------

const STATE = { run: "all", category: "all", center: "all", metric: null, disagree: "100",
  sortKey: "order", ascending: true, page: 0, selected: null };

function runLabel(run) { return `${run.dataset} × ${run.model}`; }

function itemValue(item, explainer, column) {
  const run = DATA.runs[item.run];
  const values = item.values[explainer];
  if (!values) return null;
  const value = values[run.value_columns.indexOf(column)];
  if (value === undefined || value === null) return null;
  return typeof value === "boolean" ? Number(value) : value;
}

function spread(item, column) {
  const values = DATA.runs[item.run].explainers.map((label) => itemValue(item, label, column))
    .filter((value) => value !== null);
  return values.length ? Math.max(...values) - Math.min(...values) : null;
}

function options(select, values, chosen) {
  select.replaceChildren(...values.map(([value, label]) => el("option",
    { value, selected: value === chosen, text: label })));
}

function setupControls() {
  const run = document.getElementById("filter-run");
  options(run, [["all", "all runs"], ...DATA.runs.map((r, i) => [String(i), runLabel(r)])], "all");
  const columns = [...new Set(DATA.runs.flatMap((r) => r.compared))];
  STATE.metric = columns.includes("insertion_auc") ? "insertion_auc" : columns[0] || null;
  options(document.getElementById("item-metric"), columns.map((c) => [c, c]), STATE.metric);
  const bind = (id, key) => document.getElementById(id).addEventListener("change", (event) => {
    STATE[key] = event.target.value;
    STATE.page = 0;
    if (key === "run") { STATE.category = "all"; setupClasses(); }
    renderItems();
  });
  bind("filter-run", "run");
  bind("filter-class", "category");
  bind("filter-center", "center");
  bind("item-metric", "metric");
  bind("filter-disagree", "disagree");
  setupClasses();
}

function setupClasses() {
  const items = DATA.items.filter((item) => STATE.run === "all" || String(item.run) === STATE.run);
  const classes = [...new Set(items.map((item) => item.category))].sort();
  options(document.getElementById("filter-class"),
    [["all", `all classes (${classes.length})`], ...classes.map((c) => [c, c])], STATE.category);
}

function shownExplainers() {
  const runs = STATE.run === "all" ? DATA.runs : [DATA.runs[Number(STATE.run)]];
  return [...new Set(runs.flatMap((run) => run.explainers))];
}

function filteredItems() {
  let items = DATA.items.filter((item) =>
    (STATE.run === "all" || String(item.run) === STATE.run) &&
    (STATE.category === "all" || item.category === STATE.category) &&
    (STATE.center === "all" || (STATE.center === "miss") === (item.center_miss === true)));
  const spreads = new Map(items.map((item) => [item, spread(item, STATE.metric)]));
  if (STATE.disagree !== "100") {
    const ranked = items.filter((item) => spreads.get(item) !== null)
      .sort((a, b) => spreads.get(b) - spreads.get(a));
    const keep = Math.ceil(ranked.length * Number(STATE.disagree) / 100);
    const kept = new Set(ranked.slice(0, keep));
    items = items.filter((item) => kept.has(item));
  }
  const key = (item) => {
    if (STATE.sortKey === "order") return DATA.items.indexOf(item);
    if (STATE.sortKey === "spread") return spreads.get(item);
    return itemValue(item, STATE.sortKey, STATE.metric);
  };
  const sign = STATE.ascending ? 1 : -1;
  return items.map((item) => [item, key(item)]).sort((a, b) => {
    if (a[1] === null && b[1] === null) return 0;
    if (a[1] === null) return 1;
    if (b[1] === null) return -1;
    return sign * (a[1] - b[1]);
  }).map(([item]) => [item, spreads.get(item)]);
}

function sortItemsBy(key) {
  STATE.ascending = STATE.sortKey === key ? !STATE.ascending : key === "order";
  STATE.sortKey = key;
  STATE.page = 0;
  renderItems();
}

function renderItems() {
  const table = document.getElementById("item-table");
  const explainers = shownExplainers();
  const header = el("tr");
  const sortable = (label, key, title) => {
    const th = el("th", { class: key === "order" ? "text" : null, text: label, title,
      "data-sort-key": key, onclick: () => sortItemsBy(key) });
    if (STATE.sortKey === key) th.setAttribute("aria-sort", STATE.ascending ? "ascending" : "descending");
    return th;
  };
  header.append(el("th", { class: "text", text: "image, region, maps" }),
    sortable("item", "order", "evaluation order"), el("th", { class: "text", text: "run" }),
    el("th", { class: "text", text: "class" }), el("th", { text: "center miss" }),
    ...explainers.map((label) => sortable(label, label, `${STATE.metric} of ${label}`)),
    sortable("spread", "spread", `max − min of ${STATE.metric} over the explainers`));
  table.tHead.replaceChildren(header);
  const rows = filteredItems();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  STATE.page = Math.min(STATE.page, pages - 1);
  const body = [];
  for (const [item, itemSpread] of rows.slice(STATE.page * PAGE_SIZE, (STATE.page + 1) * PAGE_SIZE)) {
    const picture = item.strip
      ? el("img", { src: item.strip, loading: "lazy", alt: `${item.id}: image and maps` })
      : el("span", { class: "missing", text: "no thumbnail stored" });
    const tr = el("tr", { "data-item": item.id, "data-run": item.run,
      class: STATE.selected === item ? "selected" : null, onclick: () => showItem(item) },
      el("td", { class: "pic" }, picture), el("td", { class: "text", text: item.id }),
      el("td", { class: "text", text: runLabel(DATA.runs[item.run]) }),
      el("td", { class: "text", text: item.category }),
      el("td", { text: fmt(item.center_miss) }));
    for (const label of explainers) {
      const value = itemValue(item, label, STATE.metric);
      tr.append(el("td", { "data-value": value === null ? "" : String(value), text: fmt(value) }));
    }
    tr.append(el("td", { "data-value": itemSpread === null ? "" : String(itemSpread), text: fmt(itemSpread) }));
    body.push(tr);
  }
  table.tBodies[0].replaceChildren(...body);
  document.getElementById("item-count").textContent = `${rows.length} of ${DATA.items.length} items`;
  const pager = document.getElementById("item-pages");
  pager.replaceChildren();
  if (pages > 1) {
    for (let page = 0; page < pages; page++) {
      pager.append(el("button", { type: "button", disabled: page === STATE.page,
        text: String(page + 1), onclick: () => { STATE.page = page; renderItems(); } }));
    }
  }
}

function curvePlot(title, series) {
  const width = 300, height = 170, left = 34, bottom = 22, top = 6, right = 8;
  const all = Object.values(series).flat().filter((v) => v !== null);
  let low = Math.min(0, ...all), high = Math.max(1, ...all);
  if (high === low) high = low + 1;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const x = (i, n) => left + (n > 1 ? i / (n - 1) : 0) * (width - left - right);
  const y = (v) => top + (1 - (v - low) / (high - low)) * (height - top - bottom);
  const line = (x1, y1, x2, y2, colour) => {
    const node = document.createElementNS(ns, "line");
    Object.entries({ x1, y1, x2, y2, stroke: colour, "stroke-width": 1 })
      .forEach(([k, v]) => node.setAttribute(k, v));
    svg.append(node);
  };
  const text = (tx, ty, content, anchor) => {
    const node = document.createElementNS(ns, "text");
    Object.entries({ x: tx, y: ty, "font-size": 10, "text-anchor": anchor, fill: "#555" })
      .forEach(([k, v]) => node.setAttribute(k, v));
    node.textContent = content;
    svg.append(node);
  };
  line(left, y(low), width - right, y(low), "#999");
  line(left, top, left, height - bottom, "#999");
  text(left - 3, y(high) + 4, fmt(high, 2), "end");
  text(left - 3, y(low), fmt(low, 2), "end");
  for (const [label, values] of Object.entries(series)) {
    const points = values.map((v, i) => (v === null ? null : `${x(i, values.length)},${y(v)}`))
      .filter((p) => p !== null).join(" ");
    const node = document.createElementNS(ns, "polyline");
    Object.entries({ points, fill: "none", stroke: COLOUR[label] || "#000", "stroke-width": 1.5 })
      .forEach(([k, v]) => node.setAttribute(k, v));
    node.append(Object.assign(document.createElementNS(ns, "title"), { textContent: label }));
    svg.append(node);
  }
  return el("figure", {}, svg, el("figcaption", { text: title }));
}

function showItem(item) {
  STATE.selected = item;
  for (const tr of document.querySelectorAll("#item-table tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.item === item.id && tr.dataset.run === String(item.run));
  }
  const run = DATA.runs[item.run];
  const detail = document.getElementById("item-detail");
  detail.hidden = false;
  const heading = el("h3", { text: `${item.id} (${runLabel(run)})` });
  const facts = el("p", { text: `class ${item.category} · label ${item.label} · target ${item.target} · ` +
    `predicted ${item.predicted} · target probability ${fmt(item.target_prob)} · center miss ${fmt(item.center_miss)}` });
  const picture = item.strip
    ? el("div", {}, el("img", { class: "large", src: item.strip, alt: `${item.id}: image and maps` }),
      el("div", { class: "strip-labels" }, el("span", { text: "image + region" }),
        ...run.explainers.map((label) => el("span", { text: label }))))
    : el("p", { class: "missing", text: "no thumbnail stored for this item (run made before " +
      "thumbnails were kept, and its items/ folder is absent)" });
  const legend = el("div", { class: "legend" }, ...run.explainers.map((label) =>
    el("span", {}, el("i", { style: `background:${COLOUR[label] || "#000"}` }), label)));
  const curves = el("div", { class: "curves" }, ...Object.entries(item.curves).map(([kind, series]) =>
    curvePlot(DATA.curve_titles[kind] || kind, series)));
  const values = el("table", { class: "record-values" });
  values.createTHead().append(el("tr", {}, el("th", { class: "text", text: "explainer" }),
    ...run.value_columns.map((column) => el("th", { text: column }))));
  const body = values.createTBody();
  for (const label of run.explainers) {
    body.append(el("tr", {}, el("td", { class: "text", text: label }),
      ...run.value_columns.map((column, i) => {
        const value = item.values[label] ? item.values[label][i] : null;
        return el("td", { "data-value": value === null ? "" : String(value),
          text: typeof value === "number" ? fmt(value, 4) : fmt(value) });
      })));
  }
  detail.replaceChildren(heading, facts, picture, legend, curves, values);
  detail.scrollIntoView({ block: "nearest" });
}

function main() {
  renderRuns();
  renderCrossTables();
  renderVerdicts();
  renderTrust();
  renderFigure();
  setupControls();
  renderItems();
  window.reportReadyMs = performance.now();
  document.body.dataset.ready = "1";
}

main();
