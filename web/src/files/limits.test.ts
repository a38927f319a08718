import { describe, expect, it } from "vitest";
import { mb, uploadProblem } from "./limits";

const limits = { max_file_bytes: 50 * 1024 * 1024, max_upload_bytes: 100 * 1024 * 1024, max_workspace_bytes: 200 * 1024 * 1024, used_bytes: 150 * 1024 * 1024 };

describe("upload limits", () => {
  it("says sizes in MB as the hub does", () => {
    expect(mb(50 * 1024 * 1024)).toBe("50 MB");
    expect(mb(110_000)).toBe("0.1 MB");
    expect(mb(5000)).toBe("5000 bytes");
    expect(mb(1.5 * 1024 * 1024)).toBe("1.5 MB");
  });
  it("refuses a file over the file limit before sending", () => {
    expect(uploadProblem([{ name: "big.csv", size: 60 * 1024 * 1024 }], limits)).toBe(
      "'big.csv' is 60 MB; files are limited to 50 MB.",
    );
  });
  it("refuses what does not fit in the workspace", () => {
    const files = [{ name: "a", size: 30 * 1024 * 1024 }, { name: "b", size: 30 * 1024 * 1024 }];
    expect(uploadProblem(files, limits)).toBe("These files (60 MB) do not fit: the workspace has 50 MB left of 200 MB.");
  });
  it("accepts what fits", () => {
    expect(uploadProblem([{ name: "ok.R", size: 10 }], limits)).toBeNull();
  });
});
