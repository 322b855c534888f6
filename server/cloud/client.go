// Package cloud calls Tencent Cloud CWP's export actions through the official
// Go SDK's common client, which signs every request (TC3-HMAC-SHA256).
//
// Each call is a client span "cwp <action>" (see trace.go) with the task id,
// the cloud's RequestId and the outcome, and an event for each retry of a
// request that never reached the cloud.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Service and Version name the CWP API for the SDK.
const (
	Service = "cwp"
	Version = "2018-02-28"
)

// DefaultEndpoint is the API host the SDK calls when Config.Endpoint is
// empty.
const DefaultEndpoint = "cwp.tencentcloudapi.com"

// The cloud actions this package calls.
const (
	ActionExportLicenseDetail = "ExportLicenseDetail"
	ActionExportTasks         = "ExportTasks"
)

// Config says where and as whom the client calls the cloud.
type Config struct {
	// Credential signs requests; see common.NewCredential and the SDK's
	// provider chain.
	Credential common.CredentialIface
	// Region is optional for the CWP export actions.
	Region string
	// Endpoint overrides the API host ("host:port"); empty means the SDK's
	// default, cwp.tencentcloudapi.com.
	Endpoint string
	// Scheme is "HTTPS" (default) or "HTTP".
	Scheme string
	// Timeout bounds one HTTP exchange when the caller's context has no
	// earlier deadline; 0 means 30s.
	Timeout time.Duration
	// RetryInitial, RetryMax and RetryMaxTries pace the retries of
	// requests that never reached the cloud (see NotSent); zero values
	// mean DefaultRetryInitial, DefaultRetryMax and DefaultRetryMaxTries.
	RetryInitial  time.Duration
	RetryMax      time.Duration
	RetryMaxTries int
	// TracerProvider makes the calls' spans; nil means the global one.
	TracerProvider trace.TracerProvider
}

// Client calls the two CWP export actions. It is safe for concurrent use.
type Client struct {
	sdk    *common.Client
	cfg    Config
	tracer trace.Tracer
	// host is the cloud's host, named in spans.
	host string
}

// New returns a client for cfg.
func New(cfg Config) *Client {
	prof := profile.NewClientProfile()
	prof.Language = "en-US"
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	// The SDK takes whole seconds; round up so a short timeout is not zero.
	prof.HttpProfile.ReqTimeout = int((timeout + time.Second - 1) / time.Second)
	if cfg.Endpoint != "" {
		prof.HttpProfile.Endpoint = cfg.Endpoint
	}
	if cfg.Scheme != "" {
		prof.HttpProfile.Scheme = cfg.Scheme
	}
	// Retries are this service's own decision (a blind retry of
	// ExportLicenseDetail could create a second task), so the SDK's are off.
	prof.RateLimitExceededMaxRetries = 0
	prof.NetworkFailureMaxRetries = 0
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = DefaultRetryInitial
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.RetryMaxTries <= 0 {
		cfg.RetryMaxTries = DefaultRetryMaxTries
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	host := DefaultEndpoint
	if cfg.Endpoint != "" {
		host = cfg.Endpoint
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return &Client{sdk: common.NewCommonClient(cfg.Credential, cfg.Region, prof), cfg: cfg, tracer: cfg.TracerProvider.Tracer(tracerName), host: host}
}

// Filter is one export condition, named as the cloud names it.
type Filter struct {
	Name       string
	Values     []string
	ExactMatch bool
}

// Tag is a platform tag condition.
type Tag struct {
	Key   string
	Value string
}

// ExportParams are the parameters of ExportLicenseDetail.
type ExportParams struct {
	Filters     []Filter
	IsHistory   bool
	Tags        []Tag
	ExportMonth string
}

// Created is the cloud's answer to ExportLicenseDetail.
type Created struct {
	TaskID    int64
	RequestID string
}

// Status is a task state as the cloud reports it.
type Status string

// The task states ExportTasks reports.
const (
	StatusPending  Status = "PENDING"
	StatusFinished Status = "FINISHED"
	StatusError    Status = "ERROR"
)

// TaskStatus is the cloud's answer to ExportTasks.
type TaskStatus struct {
	Status      Status
	DownloadURL string
	RequestID   string
}

// ExportLicenseDetail starts an export and returns the new task's id. It is
// retried only when the request cannot have reached the cloud (NotSent): a
// blind retry could create a second task.
func (c *Client) ExportLicenseDetail(ctx context.Context, p ExportParams) (created Created, err error) {
	ctx, span := c.start(ctx, ActionExportLicenseDetail)
	defer func() { end(span, created.TaskID, created.RequestID, err) }()
	return retry(ctx, &c.cfg, NotSent, retried(span), func() (Created, error) { return c.exportLicenseDetail(ctx, p) })
}

func (c *Client) exportLicenseDetail(ctx context.Context, p ExportParams) (Created, error) {
	params := map[string]any{}
	if len(p.Filters) > 0 {
		filters := make([]map[string]any, 0, len(p.Filters))
		for _, f := range p.Filters {
			filters = append(filters, map[string]any{"Name": f.Name, "Values": f.Values, "ExactMatch": f.ExactMatch})
		}
		params["Filters"] = filters
	}
	if p.IsHistory {
		params["IsHistory"] = true
	}
	if len(p.Tags) > 0 {
		tags := make([]map[string]any, 0, len(p.Tags))
		for _, t := range p.Tags {
			tags = append(tags, map[string]any{"TagKey": t.Key, "TagValue": t.Value})
		}
		params["Tags"] = tags
	}
	if p.ExportMonth != "" {
		params["ExportMonth"] = p.ExportMonth
	}
	var resp struct {
		tchttp.BaseResponse
		Response struct {
			TaskID    int64  `json:"TaskId"`
			RequestID string `json:"RequestId"`
		} `json:"Response"`
	}
	if err := c.send(ctx, ActionExportLicenseDetail, params, &resp); err != nil {
		return Created{}, err
	}
	id := resp.Response.TaskID
	if id <= 0 {
		return Created{}, &Error{Action: ActionExportLicenseDetail, Code: CodeBadResponse, Message: fmt.Sprintf("cloud answered with task id %d", id), RequestID: resp.Response.RequestID}
	}
	return Created{TaskID: id, RequestID: resp.Response.RequestID}, nil
}

// ExportTasks reads the state of an export task. Requests that never reached
// the cloud are retried here; other transient failures are retried by the
// caller's schedule (the tracker), so that every attempt that reaches the
// cloud is paced by the read budget.
func (c *Client) ExportTasks(ctx context.Context, taskID int64) (st TaskStatus, err error) {
	ctx, span := c.start(ctx, ActionExportTasks, attribute.Int64(AttrTaskID, taskID))
	defer func() {
		if err == nil {
			span.SetAttributes(attribute.String(AttrTaskStatus, string(st.Status)))
		}
		end(span, 0, st.RequestID, err)
	}()
	return retry(ctx, &c.cfg, NotSent, retried(span), func() (TaskStatus, error) { return c.exportTasks(ctx, taskID) })
}

func (c *Client) exportTasks(ctx context.Context, taskID int64) (TaskStatus, error) {
	var resp struct {
		tchttp.BaseResponse
		Response struct {
			Status      string `json:"Status"`
			DownloadURL string `json:"DownloadUrl"`
			RequestID   string `json:"RequestId"`
		} `json:"Response"`
	}
	if err := c.send(ctx, ActionExportTasks, map[string]any{"TaskId": strconv.FormatInt(taskID, 10)}, &resp); err != nil {
		return TaskStatus{}, err
	}
	st := TaskStatus{Status: Status(resp.Response.Status), DownloadURL: resp.Response.DownloadURL, RequestID: resp.Response.RequestID}
	switch st.Status {
	case StatusPending, StatusError:
	case StatusFinished:
		if st.DownloadURL == "" {
			return TaskStatus{}, &Error{Action: ActionExportTasks, Code: CodeBadResponse, Message: "cloud reported FINISHED without a download URL", RequestID: st.RequestID}
		}
	default:
		return TaskStatus{}, &Error{Action: ActionExportTasks, Code: CodeBadResponse, Message: fmt.Sprintf("cloud reported unknown task status %q", st.Status), RequestID: st.RequestID}
	}
	return st, nil
}

func (c *Client) send(ctx context.Context, action string, params map[string]any, resp tchttp.Response) error {
	req := tchttp.NewCommonRequest(Service, Version, action)
	if err := req.SetActionParameters(params); err != nil {
		return fmt.Errorf("%s: build request: %w", action, err)
	}
	req.SetContext(ctx)
	if err := c.sdk.Send(req, resp); err != nil {
		return fromSDK(ctx, action, err)
	}
	return nil
}

// fromSDK turns an SDK error into an *Error, keeping the context's own error
// reachable so callers can tell their cancellation from a cloud fault.
func fromSDK(ctx context.Context, action string, err error) error {
	var sdkErr *tcerr.TencentCloudSDKError
	if !errors.As(err, &sdkErr) {
		return &Error{Action: action, Code: CodeNetwork, Message: "calling the cloud failed", Err: err}
	}
	e := &Error{Action: action, Code: sdkErr.GetCode(), Message: sdkErr.GetMessage(), RequestID: sdkErr.GetRequestId(), Err: sdkErr.Unwrap()}
	if ctxErr := ctx.Err(); ctxErr != nil && e.Code == CodeNetwork {
		e.Err = ctxErr
	}
	return e
}
