// Reads a JSON array of LogQL queries on stdin; writes a JSON array with, for each,
// the [from, to] offsets of every syntax error Grafana's LogQL grammar finds.
import { parser } from "@grafana/lezer-logql";

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const results = JSON.parse(input).map((query) => {
    const errors = [];
    parser.parse(query).iterate({
      enter: (node) => { if (node.type.isError) errors.push([node.from, node.to]); },
    });
    return errors;
  });
  process.stdout.write(JSON.stringify(results));
});
