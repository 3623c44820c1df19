// Renders an Ollama Modelfile TEMPLATE with Go's text/template, as Ollama does for a chat: the template gets
// .Messages (role, content) and .System (every system message's content, joined). Reads
// {"template": "...", "chats": [[{"role": ..., "content": ...}, ...], ...]} on stdin; writes a JSON list of
// the rendered prompts on stdout. tests/serve/test_modelfile.py compiles and runs it.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func main() {
	var in struct {
		Template string      `json:"template"`
		Chats    [][]Message `json:"chats"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("modelfile").Parse(in.Template))
	out := []string{}
	for _, chat := range in.Chats {
		var system []string
		for _, m := range chat {
			if m.Role == "system" {
				system = append(system, m.Content)
			}
		}
		var b strings.Builder
		values := map[string]any{"Messages": chat, "System": strings.Join(system, "\n\n"), "Response": ""}
		if err := tmpl.Execute(&b, values); err != nil {
			panic(err)
		}
		out = append(out, b.String())
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}
