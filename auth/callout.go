package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// globalAccount is the account NATS puts clients in when it runs without
// operator mode, as homemesh's servers do.
const globalAccount = "$G"

// errBusRefused is what a client that proves no identity is told; the
// reason stays in auth's log, so a guesser learns nothing.
var errBusRefused = errors.New("not a homemesh service identity of this home")

// BusKeys returns the bus identities of the service's home.
func (s *Service) BusKeys() *BusKeys { return s.busKeys }

// ServeBusCallout answers the NATS server's auth callout on the service's
// connection, which must be the auth identity the server lets through
// (auth_users). Every other client is admitted only with a service's bus
// credential, and then with exactly that service's permissions
// (ServiceBusPermissions). It serves until stop is called or the
// connection closes; several auth processes share the requests.
func (s *Service) ServeBusCallout() (stop func(), err error) {
	sub, err := s.bus.NATS().QueueSubscribe(calloutSubject, Queue, func(msg *nats.Msg) {
		resp, err := s.authorizeBusClient(msg.Data)
		if err != nil {
			// Without a user key there is nobody to address a refusal to;
			// an empty answer is the server's "not authorised".
			s.log.Warn("unreadable auth callout request", "err", err)
			resp = nil
		}
		if err := msg.Respond(resp); err != nil {
			s.log.Warn("auth callout answer not sent", "err", err)
		}
	})
	if err != nil {
		return nil, unavailable("subscribe to auth callout", err)
	}
	if err := s.bus.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, unavailable("subscribe to auth callout", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// authorizeBusClient decides one callout request. It returns the signed
// answer: a user with its service's permissions, or a refusal. An error
// means the request itself is unusable.
func (s *Service) authorizeBusClient(data []byte) ([]byte, error) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(data))
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if !nkeys.IsValidPublicServerKey(req.Issuer) {
		return nil, errors.New("not signed by a NATS server")
	}
	if !nkeys.IsValidPublicUserKey(req.UserNkey) {
		return nil, errors.New("no user key to admit")
	}
	answer := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	answer.Audience = req.Server.ID
	user := req.ConnectOptions.Username
	service, ok := s.busKeys.verify(user, req.ConnectOptions.Password)
	if !ok {
		// The user name is chosen by the client: logged for the operator,
		// never the password.
		s.log.Warn("bus connection refused", "user", user, "peer", req.ClientInformation.Host, "client", req.ClientInformation.Name)
		answer.Error = errBusRefused.Error()
		return s.sign(answer)
	}
	perms, err := ServiceBusPermissions(s.cfg.Home, service)
	if err != nil {
		return nil, err
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = user
	uc.Audience = globalAccount
	uc.Permissions = natsPermissions(perms)
	userJWT, err := uc.Encode(s.busKeys.issuer)
	if err != nil {
		return nil, fmt.Errorf("sign bus user: %w", err)
	}
	answer.Jwt = userJWT
	s.log.Info("bus connection admitted", "user", user, "peer", req.ClientInformation.Host, "client", req.ClientInformation.Name)
	return s.sign(answer)
}

func (s *Service) sign(answer *jwt.AuthorizationResponseClaims) ([]byte, error) {
	answer.Expires = time.Now().Add(time.Minute).Unix()
	token, err := answer.Encode(s.busKeys.issuer)
	if err != nil {
		return nil, fmt.Errorf("sign callout answer: %w", err)
	}
	return []byte(token), nil
}

// natsPermissions converts p to the JWT form the NATS server enforces.
func natsPermissions(p BusPermissions) jwt.Permissions {
	var out jwt.Permissions
	out.Pub.Allow.Add(p.Publish...)
	out.Sub.Allow.Add(p.Subscribe...)
	if p.Responses {
		// One reply per request, within the time a request may wait.
		out.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return out
}
