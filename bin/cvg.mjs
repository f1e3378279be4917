#!/usr/bin/env node
// The `cvg` command (package.json "bin").
//
// - In an installed package (no src/): runs dist/cli/main.js, compiled by `npm run build` and shipped.
// - In a clone of cvg-core: runs src/cli/main.ts, so that `npx cvg ...` works right after `npm ci`
//   with no build and never runs a stale dist/. The source and its packages are bundled into one
//   file, node_modules/.cache/cvg-cli/main.mjs, with the esbuild that tsx brings (about a second,
//   again whenever src/ or the installed packages change): one file loads in a third of the time of
//   the hundreds of modules it comes from, and tsx's loader would take seconds more on every start.
//   Without esbuild, tsx's loader runs the source as it is.
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from "node:fs"
import { fileURLToPath } from "node:url"

const root = new URL("../", import.meta.url)
const source = new URL("src/cli/main.ts", root)
const built = new URL("dist/cli/main.js", root)

/** The newest modification time of the .ts files under `dir` and of the installed packages' list. */
const newest = (dir) => {
  const installed = new URL("node_modules/.package-lock.json", root)
  let latest = existsSync(installed) ? statSync(installed).mtimeMs : 0
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(".ts")) latest = Math.max(latest, statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs)
  }
  return latest
}

/** Bundles src/cli/main.ts when the bundle is missing or older than src/; undefined without esbuild. */
const bundle = async () => {
  const esbuild = await import("esbuild").catch(() => undefined)
  if (esbuild === undefined) return undefined
  const dir = new URL("node_modules/.cache/cvg-cli/", root)
  const out = new URL("main.mjs", dir)
  if (existsSync(out) && statSync(out).mtimeMs >= newest(fileURLToPath(new URL("src/", root)))) return out
  mkdirSync(dir, { recursive: true })
  // Written aside and renamed, so that cvg processes started together never load a half-written file.
  const partial = new URL(`main.${process.pid}.mjs`, dir)
  esbuild.buildSync({
    entryPoints: [fileURLToPath(source)],
    outfile: fileURLToPath(partial),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // CommonJS packages in an ES module bundle still call `require` (node: built-ins, optional addons).
    banner: { js: "import { createRequire as cvgCreateRequire } from \"node:module\"; const require = cvgCreateRequire(import.meta.url);" },
    logLevel: "error"
  })
  renameSync(partial, out)
  return out
}

if (existsSync(source)) {
  const bundled = await bundle()
  if (bundled !== undefined) {
    await import(bundled.href)
  } else {
    const tsx = await import("tsx/esm/api")
    tsx.register()
    await import(source.href)
  }
} else if (existsSync(built)) {
  await import(built.href)
} else {
  process.stderr.write("cvg: no build of the command line: run `npm run build`\n")
  process.exit(1)
}
