/**
 * Who is calling, as proven by a client certificate (or anyone, in insecure mode, which acts as
 * the admin person). Every model operation takes one and checks it.
 */
export type Actor =
  | { kind: "person"; id: string; isAdmin: boolean }
  | { kind: "computer"; id: string }
  | { kind: "instance"; id: string };

export function describeActor(actor: Actor): string {
  return `${actor.kind} ${actor.id}`;
}
