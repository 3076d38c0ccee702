package server

// startGroups starts the group coordinator (see groups wiring).
func (s *Server) startGroups() error { return nil }

func (s *Server) stopGroups() error { return nil }

// topicsChanged tells the coordinator that topics were created, grown or
// deleted.
func (s *Server) topicsChanged() {}
