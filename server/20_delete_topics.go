package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// DeleteTopics, v0-v6 (v6 may name topics by id). The deletion is durable
// in the metadata log before the answer; the partition directories are
// removed at once.

func init() { regKey(20, 0, 6, handleDeleteTopics) }

func handleDeleteTopics(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if r.version >= 6 {
		for _, t := range req.Topics {
			targets = append(targets, target{t.Topic, t.TopicID})
		}
	} else {
		for _, n := range req.TopicNames {
			targets = append(targets, target{name: &n})
		}
	}
	r.await(func() kmsg.Response {
		for _, tg := range targets {
			st := kmsg.NewDeleteTopicsResponseTopic()
			st.Topic, st.TopicID = tg.name, tg.id
			var t *meta.Topic
			if tg.name != nil {
				t = s.meta.Topic(*tg.name)
			} else {
				t = s.meta.TopicByID(tg.id)
			}
			if (t != nil || tg.name != nil) && !r.allowed(auth.ResourceTopic, deref(tg.name, t), auth.OpDelete) {
				st.ErrorCode = kerr.TopicAuthorizationFailed.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
			if t == nil {
				st.ErrorCode = kerr.UnknownTopicOrPartition.Code
				if tg.name == nil {
					st.ErrorCode = kerr.UnknownTopicID.Code
				}
				resp.Topics = append(resp.Topics, st)
				continue
			}
			name := t.Name()
			st.Topic, st.TopicID = &name, t.ID()
			if err := s.meta.DeleteTopic(t); err != nil {
				code, msg := errorCode(err)
				st.ErrorCode = code
				if r.version >= 5 {
					st.ErrorMessage = msg
				}
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	})
	return nil
}

// deref is the name given, else t's.
func deref(name *string, t *meta.Topic) string {
	if name != nil {
		return *name
	}
	return t.Name()
}
