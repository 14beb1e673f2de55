/** What the bootstrapper reports while it works: the Pulumi provider logs it, the CLI prints it. */
export interface ProgressEvent {
  step: string;
  status: "started" | "done" | "unchanged" | "failed";
  detail?: string;
}

export type Progress = (event: ProgressEvent) => void;

/** Runs one step, reporting it; the step says whether it changed anything. */
export async function step<T extends { changed: boolean; detail?: string }>(
  progress: Progress,
  name: string,
  work: () => Promise<T>,
): Promise<T> {
  progress({ step: name, status: "started" });
  try {
    const result = await work();
    progress({ step: name, status: result.changed ? "done" : "unchanged", detail: result.detail });
    return result;
  } catch (error) {
    progress({ step: name, status: "failed", detail: (error as Error).message });
    throw error;
  }
}
