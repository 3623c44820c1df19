// Evaluates an expr-language expression against a JSON environment (maps of interface{}, as Argo's event
// dispatch makes it) and prints the result: go run expr_eval.go EXPRESSION ENV_JSON. For tests/charts only.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/antonmedv/expr"
)

func main() {
	var env map[string]interface{}
	if err := json.Unmarshal([]byte(os.Args[2]), &env); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	program, err := expr.Compile(os.Args[1], expr.Env(env))
	if err != nil {
		fmt.Fprintln(os.Stderr, "compile:", err)
		os.Exit(2)
	}
	out, err := expr.Run(program, env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(2)
	}
	fmt.Println(out)
}
