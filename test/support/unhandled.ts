/**
 * Fails the file if any test left a rejected promise behind (issue 3: "no unhandled rejection").
 * Call once at the top level of a test file.
 */
import { afterAll, beforeAll, expect } from "@effect/vitest"

export const failOnUnhandledRejections = (): void => {
  const unhandled: Array<unknown> = []
  const onUnhandled = (reason: unknown) => void unhandled.push(reason)
  beforeAll(() => void process.on("unhandledRejection", onUnhandled))
  afterAll(() => {
    process.off("unhandledRejection", onUnhandled)
    expect(unhandled).toEqual([])
  })
}
