/** Prints §12's examples: `npx tsx scratchpad/typed-vector.ts`. */
import { Either, Schema } from "effect"
import * as Codec from "../src/typed/Codec.js"
class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
class UserNotFound extends Schema.TaggedError<UserNotFound>()("UserNotFound", { id: Schema.Number }) {}
class GetUser extends Schema.TaggedRequest<GetUser>()("GetUser", { failure: UserNotFound, success: User, payload: { id: Schema.Number } }) {}
const hex = (e: Either.Either<Uint8Array, string>) => Either.getOrThrow(e).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "")
console.log("request", hex(Codec.encode(GetUser, new GetUser({ id: 7 }))))
console.log("success", hex(Codec.encode(User, new User({ id: 7, name: "Alice" }))))
console.log("failure", hex(Codec.encode(UserNotFound, new UserNotFound({ id: 8 }))))
