// Adding a package to the workspace's declaration (requirements.txt for Python, DESCRIPTION
// for R), so that what was installed while exploring (the overlay) becomes part of the
// environment every later session builds (docs/environments.md). Pure text edits: the pane
// reads the file, applies one of these and saves it with the version it read.

/** requirements.txt with `name==version`: a line for the same project is replaced. */
export function addRequirement(text: string, name: string, version: string): string {
  const norm = (s: string) => s.toLowerCase().replace(/[-_.]+/g, "-");
  const want = norm(name);
  const line = `${name}==${version}`;
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  const i = lines.findIndex((l) => {
    const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(l);
    return m !== null && !l.trimStart().startsWith("#") && norm(m[1]!) === want;
  });
  if (i >= 0) lines[i] = line;
  else lines.push(line);
  return lines.join("\n") + "\n";
}

/** DESCRIPTION with `name` in Imports (a new file: a minimal DESCRIPTION). */
export function addImport(text: string, name: string): string {
  if (text.trim() === "") return `Package: workspace\nVersion: 0.0.1\nImports: ${name}\n`;
  const lines = text.replace(/\n$/, "").split("\n");
  const start = lines.findIndex((l) => /^Imports\s*:/.test(l));
  if (start < 0) return [...lines, `Imports: ${name}`].join("\n") + "\n";
  let end = start;
  while (end + 1 < lines.length && /^\s/.test(lines[end + 1]!)) end++;
  const rest = lines.slice(start, end + 1).join("\n").replace(/^Imports\s*:/, "");
  const names = rest.split(",").map((s) => s.trim().split(/[\s(]/)[0]).filter(Boolean);
  if (names.includes(name)) return text;
  const body = rest.trim() === "" ? ` ${name}` : `${rest.replace(/,?\s*$/, "")},\n    ${name}`;
  lines.splice(start, end - start + 1, `Imports:${body}`);
  return lines.join("\n") + "\n";
}
