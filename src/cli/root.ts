/**
 * The cvg-core package's folder, found from this module upwards: src/cli/ in a clone, dist/cli/ in an
 * installed package, or the launcher's bundle in node_modules/.cache/cvg-cli/ (bin/cvg.mjs).
 */
import { existsSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

interface Manifest {
  readonly root: string
  readonly version: string
}

const read = (path: string): unknown => {
  try {
    return JSON.parse(readFileSync(path, "utf8"))
  } catch {
    return undefined
  }
}

const find = (): Manifest => {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const path = join(dir, "package.json")
    const manifest = existsSync(path) ? read(path) : undefined
    if (typeof manifest === "object" && manifest !== null && "name" in manifest && manifest.name === "cvg-core") {
      return { root: dir, version: "version" in manifest && typeof manifest.version === "string" ? manifest.version : "unknown" }
    }
    const parent = dirname(dir)
    if (parent === dir) return { root: dirname(fileURLToPath(import.meta.url)), version: "unknown" }
    dir = parent
  }
}

export const packageInfo: Manifest = find()
