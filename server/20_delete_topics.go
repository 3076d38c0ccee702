package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
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
			var t *topic
			if tg.name != nil {
				t = s.topics.get(*tg.name)
			} else {
				t = s.topics.getID(tg.id)
			}
			if t == nil {
				st.ErrorCode = kerr.UnknownTopicOrPartition.Code
				if tg.name == nil {
					st.ErrorCode = kerr.UnknownTopicID.Code
				}
				resp.Topics = append(resp.Topics, st)
				continue
			}
			name := t.name
			st.Topic, st.TopicID = &name, t.id
			if err := s.deleteTopic(t); err != nil {
				code, msg := errCode(err)
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
