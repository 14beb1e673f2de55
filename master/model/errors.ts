/** Why a model operation was refused; the API maps each kind to a status code. */
export type ModelErrorKind = "invalid" | "forbidden" | "not_found" | "conflict" | "not_ready";

/** A refusal that names what was wrong and, where it helps, what to do instead. */
export class ModelError extends Error {
  constructor(
    readonly kind: ModelErrorKind,
    message: string,
    /** The input field at fault, for `invalid`. */
    readonly field?: string,
  ) {
    super(message);
    this.name = "ModelError";
  }
}

export const invalid = (field: string, message: string) => new ModelError("invalid", message, field);
export const forbidden = (message: string) => new ModelError("forbidden", message);
export const notFound = (message: string) => new ModelError("not_found", message);
export const conflict = (message: string) => new ModelError("conflict", message);
