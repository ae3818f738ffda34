#!/usr/bin/env node
// Fails on any import cycle among the compiled modules (default folder: dist/).
//
// dist/ is the truth: tsc erases type-only imports, so a cycle in lib/ that exists only in types
// is not one here, and one that survives compilation is. Static imports and re-exports are edges,
// and so are dynamic import()s of a literal path: a dynamic import that closes a loop still ties
// the two modules to each other, it only moves the failure from load time to call time.
//
// Usage: node scripts/check-import-cycles.mjs [DIR]   (npm run check:cycles; CI runs it, and so
// does test/import-cycles.test.ts)
// Prints every cycle as a path (`a.js -> b.js -> a.js`, relative to DIR) and exits 1; exits 2
// when a relative import names a file that is not there; exits 0 and prints a count otherwise.
// Every file in DIR counts, also one that tsc left behind for a module renamed since: build into
// a clean dist/ (rm -rf dist) when a reported path has no source in lib/.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

// Enough to show any problem; a graph tangled past this is fixed the same way.
const MAX_CYCLES = 200;

function jsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return jsFiles(path);
    return e.isFile() && /\.[cm]?js$/.test(e.name) ? [path] : [];
  });
}

/** The relative specifiers a module loads at run time. */
function runtimeSpecifiers(file) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.JS);
  const specs = [];
  const visit = (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      specs.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) specs.push(arg.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return specs.filter((s) => s.startsWith('./') || s.startsWith('../'));
}

/** Strongly connected components (Tarjan): a cycle never leaves the component it starts in. */
function components(graph) {
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const component = new Map();
  let next = 0;
  const connect = (v) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v), index.get(w)));
      }
    }
    if (low.get(v) === index.get(v)) {
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        component.set(w, v);
      } while (w !== v);
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) connect(v);
  return component;
}

/** Elementary cycles, each from its first module (in `order`) back to it. */
function cycles(graph, order) {
  const rank = new Map(order.map((f, i) => [f, i]));
  const component = components(graph);
  const found = [];
  for (const start of order) {
    const path = [start];
    const onPath = new Set(path);
    // Only modules of the start's component ranked after it: each cycle is found once, and an
    // acyclic graph costs one look at each module's imports.
    const walk = (node) => {
      for (const next of graph.get(node)) {
        if (found.length >= MAX_CYCLES) return;
        if (next === start) found.push([...path, start]);
        else if (component.get(next) === component.get(start) && rank.get(next) > rank.get(start) && !onPath.has(next)) {
          path.push(next);
          onPath.add(next);
          walk(next);
          onPath.delete(next);
          path.pop();
        }
      }
    };
    walk(start);
  }
  return found;
}

const root = resolve(process.argv[2] ?? 'dist');
if (!existsSync(root) || !statSync(root).isDirectory()) {
  console.error(`check-import-cycles: ${root} is not a folder (build it first: npm run build:ts)`);
  process.exit(2);
}
const files = jsFiles(root).sort();
const graph = new Map();
const unresolved = [];
for (const file of files) {
  const targets = new Set();
  for (const spec of runtimeSpecifiers(file)) {
    const target = resolve(dirname(file), spec);
    if (existsSync(target) && statSync(target).isFile()) targets.add(target);
    else unresolved.push(`${relative(root, file)}: '${spec}'`);
  }
  graph.set(file, [...targets].sort());
}
if (unresolved.length > 0) {
  console.error(`check-import-cycles: imports of files that do not exist:\n  ${unresolved.join('\n  ')}`);
  process.exit(2);
}

const found = cycles(graph, files);
if (found.length > 0) {
  const more = found.length >= MAX_CYCLES ? ` (the first ${MAX_CYCLES}; there are more)` : '';
  console.error(`check-import-cycles: ${found.length} import cycle${found.length === 1 ? '' : 's'} in ${relative(process.cwd(), root) || '.'}${more}:`);
  for (const c of found) console.error(`  ${c.map((f) => relative(root, f)).join(' -> ')}`);
  process.exit(1);
}
const edges = [...graph.values()].reduce((n, t) => n + t.length, 0);
console.log(`check-import-cycles: no cycle among ${files.length} modules (${edges} imports) in ${relative(process.cwd(), root) || '.'}`);
