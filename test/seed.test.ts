/**
 * The seed README's example (examples/seed.ts, what `npm start` runs), over loopback TCP: a handler
 * answers the first COMMAND, a premade packet the second, and both answers carry the request's id.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { main } from "../examples/seed.js"
import { PacketType } from "../src/index.js"
import { bounded, str } from "./support/sessions.js"

describe("seed example", () => {
  it.live("answers both commands over TCP, as the seed's README shows", () =>
    Effect.gen(function*() {
      const [a, b] = yield* main.pipe(bounded("the seed example"))
      expect({ id: a.id, type: a.type, payload: str(a.payload) }).toEqual({ id: 3, type: PacketType.RESPONSE, payload: "world_a" })
      expect({ id: b.id, type: b.type, payload: str(b.payload) }).toEqual({ id: 3, type: PacketType.RESPONSE, payload: "world_b" })
    }))
})
