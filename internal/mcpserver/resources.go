package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/store"
)

// taskURIPrefix starts every task's resource URI: weft://tasks/{id}.
const taskURIPrefix = "weft://tasks/"

// addTaskResource serves every task as a resource: the task as get_task
// returns it, without events.
func (tb *toolbox) addTaskResource(srv *mcp.Server) {
	srv.AddResourceTemplate(&mcp.ResourceTemplate{
		Name:        "task",
		Title:       "Weft task",
		Description: "A Weft task as JSON: its state, arguments, attempts, result and errors.",
		MIMEType:    "application/json",
		URITemplate: taskURIPrefix + "{id}",
	}, func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		uri := req.Params.URI
		id := strings.TrimPrefix(uri, taskURIPrefix)
		t, err := tb.b.Get(ctx, id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, apiclient.ErrNotFound) {
			return nil, mcp.ResourceNotFoundError(uri)
		}
		if err != nil {
			return nil, tb.toolError(err)
		}
		b, err := json.Marshal(t)
		if err != nil {
			return nil, fmt.Errorf("encode task %s: %w", id, err)
		}
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "application/json", Text: string(b)}}}, nil
	})
}
