import { describe, expect, it } from "vitest";
import { addImport, addRequirement } from "./declare";

describe("addRequirement", () => {
  it("appends a pinned line, or replaces the line of the same project", () => {
    expect(addRequirement("", "tomli", "2.0.1")).toBe("tomli==2.0.1\n");
    expect(addRequirement("six==1.16.0\n# c\n", "Tomli", "2.0.1")).toBe("six==1.16.0\n# c\nTomli==2.0.1\n");
    expect(addRequirement("six>=1\nattrs\n", "six", "1.17.0")).toBe("six==1.17.0\nattrs\n");
    expect(addRequirement("typing_extensions==4\n", "typing-extensions", "4.12.2")).toBe(
      "typing-extensions==4.12.2\n",
    );
  });
});

describe("addImport", () => {
  it("adds to Imports, makes the field, or a minimal DESCRIPTION", () => {
    expect(addImport("", "glue")).toBe("Package: workspace\nVersion: 0.0.1\nImports: glue\n");
    expect(addImport("Package: a\nVersion: 1\n", "glue")).toBe("Package: a\nVersion: 1\nImports: glue\n");
    expect(addImport("Package: a\nImports: jsonlite (>= 1.0),\n    cli\nLicense: MIT\n", "glue")).toBe(
      "Package: a\nImports: jsonlite (>= 1.0),\n    cli,\n    glue\nLicense: MIT\n",
    );
  });
  it("leaves a DESCRIPTION that already imports the package as it is", () => {
    const d = "Package: a\nImports: glue (>= 1.6), cli\n";
    expect(addImport(d, "glue")).toBe(d);
  });
});
