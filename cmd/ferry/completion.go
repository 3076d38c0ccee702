package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// runCompletion prints a bash or zsh completion script generated from the
// command tree, so new commands and flags complete without editing it.
//
//	source <(ferry completion bash)   # or put it in /etc/bash_completion.d/ferry
//	source <(ferry completion zsh)    # or save it as _ferry on $fpath
func runCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return usageError("completion: name a shell: bash or zsh")
	}
	cases := completionCases()
	switch args[0] {
	case "bash":
		var b strings.Builder
		b.WriteString(`# bash completion for ferry; source <(ferry completion bash)
_ferry() {
  local cur="${COMP_WORDS[COMP_CWORD]}" path="" w i cands=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    case "$w" in -*) ;; *) path="$path $w" ;; esac
  done
  path="${path# }"
  case "$path" in
`)
		for _, c := range cases {
			fmt.Fprintf(&b, "    %s) cands=%q ;;\n", c.pattern, c.words)
		}
		b.WriteString(`  esac
  COMPREPLY=($(compgen -W "$cands" -- "$cur"))
}
complete -o default -F _ferry ferry
`)
		_, err := io.WriteString(stdout, b.String())
		return err
	case "zsh":
		var b strings.Builder
		b.WriteString(`#compdef ferry
# zsh completion for ferry; source <(ferry completion zsh), or save as _ferry on $fpath
_ferry() {
  local path_="" w i cands=""
  for (( i = 2; i < CURRENT; i++ )); do
    w=${words[i]}
    [[ $w == -* ]] || path_="$path_ $w"
  done
  path_=${path_# }
  case $path_ in
`)
		for _, c := range cases {
			fmt.Fprintf(&b, "    %s) cands=%q ;;\n", c.pattern, c.words)
		}
		b.WriteString(`  esac
  if [[ -n $cands ]]; then
    compadd -- ${=cands}
  else
    _files
  fi
}
if [[ "$funcstack[1]" == "_ferry" ]]; then
  _ferry "$@"
else
  compdef _ferry ferry
fi
`)
		_, err := io.WriteString(stdout, b.String())
		return err
	}
	return usageError("completion: unknown shell %q: want bash or zsh", args[0])
}

type completionCase struct {
	pattern string // shell case pattern over the non-flag words so far
	words   string // candidates
}

// completionCases walks the command tree: a group completes its
// subcommands; a leaf (and anything after it, its arguments) its flags.
// Leaves come before groups so the longer patterns match first.
func completionCases() []completionCase {
	var leaves, groups []completionCase
	var walk func(path []string, cmds []*command)
	walk = func(path []string, cmds []*command) {
		var names []string
		for _, c := range cmds {
			names = append(names, c.name)
			p := append(append([]string(nil), path...), c.name)
			switch {
			case c.sub != nil:
				walk(p, c.sub)
			case c.name == "completion":
				leaves = append(leaves, completionCase{quotePattern(p) + "*", "bash zsh"})
			case c.name == "help":
				leaves = append(leaves, completionCase{quotePattern(p) + "*", topNames()})
			case c.flags != nil:
				leaves = append(leaves, completionCase{quotePattern(p) + "*", strings.Join(flagNames(c.flags()), " ")})
			}
		}
		groups = append(groups, completionCase{quotePattern(path), strings.Join(names, " ")})
	}
	walk(nil, commands)
	return append(leaves, groups...)
}

func topNames() string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return strings.Join(names, " ")
}

func quotePattern(path []string) string {
	return `"` + strings.Join(path, " ") + `"`
}
