/** A value's `_tag`, if it is an object with a string one: how errors and typed messages are named. */
export const tagOf = (value: unknown): string | undefined =>
  typeof value === "object" && value !== null && "_tag" in value && typeof value._tag === "string" ? value._tag : undefined
