package metrics

import (
	"regexp"
	"sync"
)

// maxRoutes bounds the distinct route label values. The PVWA client uses
// about ten templates; the headroom is for new endpoints, not for ids.
const maxRoutes = 50

// routePattern is what a route template looks like: a method and 1 to 8
// segments, each a plain word or a {placeholder}. A raw Safe or member name
// usually fails it (dots, dashes, spaces, escapes, @); one that passes is
// still caught by the maxRoutes cap.
var routePattern = regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/([A-Za-z][A-Za-z0-9]{0,31}|\{[A-Za-z][A-Za-z0-9]{0,31}\})){1,8}$`)

// routeSet turns CallInfo.Route into a route label of bounded cardinality.
// It is safe for concurrent use.
type routeSet struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

func newRouteSet(limit int) *routeSet {
	return &routeSet{max: limit, seen: make(map[string]struct{}, limit)}
}

// label returns route itself when it looks like a template and is one of
// the first max distinct ones, else "other".
func (s *routeSet) label(route string) string {
	s.mu.RLock()
	_, ok := s.seen[route]
	s.mu.RUnlock()
	if ok {
		return route
	}
	if !routePattern.MatchString(route) {
		return valueOther
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[route]; ok {
		return route
	}
	if len(s.seen) >= s.max {
		return valueOther
	}
	s.seen[route] = struct{}{}
	return route
}
