// Alerts on the relay's own metrics (shared/metrics.py), as log search rules over Application
// Insights' customMetrics table, sent to an action group that e-mails alertEmail (none when it is
// empty: the alerts still fire and show in the portal). What each one means and what to do:
// docs/operations.md. tests/test_infra_monitoring.py checks every metric queried here is emitted.
param appInsightsName string
param location string
param tags object

@description('E-mail address the alerts are sent to. Empty: no action group; alerts show in the portal only.')
param alertEmail string

@minValue(1)
@maxValue(100)
@description('Alert when more than this percentage of the events answered in 15 minutes were unavailable (5xx or failed redelivery).')
param unavailableSharePercent int

@description('Fewest events in the 15-minute window before the unavailable share is judged (a handful of events says little).')
param unavailableMinEvents int = 20

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${appInsightsName}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'cij-relay'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// The latest depth the queue-depth timer reported for the poison queue.
var poisonQuery = '''
customMetrics
| where name == "relay.queue.depth" and tostring(customDimensions["queue"]) == "poison"
| summarize arg_max(timestamp, value)
| project depth = value
'''

// The pending depth reported every five minutes over the last 35 minutes: at least six reports,
// none lower than the one before, and more at the end than at the start.
var pendingGrowingQuery = '''
customMetrics
| where timestamp > ago(35m)
| where name == "relay.queue.depth" and tostring(customDimensions["queue"]) == "pending"
| summarize depth = max(value) by report = bin(timestamp, 5m)
| order by report asc
| extend fell = iff(isnotnull(prev(depth)) and depth < prev(depth), 1, 0)
| summarize reports = count(), falls = sum(fell), depths = make_list(depth)
| where reports >= 6 and falls == 0
| project growth = todouble(depths[array_length(depths) - 1]) - todouble(depths[0])
'''

// Share of the events answered (all routes) whose outcome was unavailable, once there are enough.
var unavailableQueryTemplate = '''
customMetrics
| where name == "relay.events"
| summarize total = sum(value), unavailable = sumif(value, tostring(customDimensions["outcome"]) == "unavailable")
| where total >= MIN_EVENTS
| project sharePercent = 100.0 * unavailable / total
'''
var unavailableQuery = replace(unavailableQueryTemplate, 'MIN_EVENTS', string(unavailableMinEvents))

var misconfiguredQuery = '''
customMetrics
| where name == "relay.events" and tostring(customDimensions["outcome"]) == "misconfigured"
| summarize events = sum(value)
'''

// Reads failed and none succeeded: the cached values are aging towards their 24-hour limit.
var keyVaultQuery = '''
customMetrics
| where name == "relay.target.refreshes"
| summarize failed = sumif(value, tostring(customDimensions["result"]) == "failed"), ok = sumif(value, tostring(customDimensions["result"]) == "ok")
| where ok == 0
| project failed
'''

var rules = [
  {
    name: 'poison-queue-not-empty'
    displayName: 'CIJ relay: events given up on (poison queue not empty)'
    description: 'The poison queue holds events the relay stopped retrying. They reach CIJ only when replayed: find the cause with `python -m relayctl peek`, fix it, then `python -m relayctl replay` (docs/operations.md).'
    severity: 2
    frequency: 'PT15M'
    window: 'PT30M'
    query: poisonQuery
    measure: 'depth'
    aggregation: 'Maximum'
    threshold: 0
  }
  {
    name: 'pending-queue-growing'
    displayName: 'CIJ relay: redelivery backlog growing for 30 minutes'
    description: 'Events wait on the pending queue faster than they are delivered: CIJ is down or refusing the relay. Check the unavailable and misconfigured alerts and the workbook; the queue drains by itself when CIJ recovers.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT35M'
    query: pendingGrowingQuery
    measure: 'growth'
    aggregation: 'Maximum'
    threshold: 0
  }
  {
    name: 'unavailable-share'
    displayName: 'CIJ relay: more than ${unavailableSharePercent}% of events unavailable'
    description: 'Apps are told to retry later (5xx), or queued events fail to redeliver: CIJ, Key Vault or storage is failing. The workbook shows which; the apps retry and, with the queue, nothing is lost.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: unavailableQuery
    measure: 'sharePercent'
    aggregation: 'Maximum'
    threshold: unavailableSharePercent
  }
  {
    name: 'misconfigured'
    displayName: 'CIJ relay: CIJ refuses the relay\'s target (misconfigured)'
    description: 'CIJ answered 401, 403, 404 or a redirect: the org ID or endpoint secret is wrong, or push is not enabled for the org. Every event fails until it is fixed: check the Key Vault secrets (docs/operations.md, rotation).'
    severity: 1
    frequency: 'PT5M'
    window: 'PT10M'
    query: misconfiguredQuery
    measure: 'events'
    aggregation: 'Total'
    threshold: 0
  }
  {
    name: 'key-vault-reads-failing'
    displayName: 'CIJ relay: Key Vault reads failing'
    description: 'No read of the CIJ org ID and endpoint succeeded in 15 minutes. The relay serves cached values for up to 24 hours, then answers 503: check the vault, its network rules and the identity\'s Key Vault Secrets User role.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: keyVaultQuery
    measure: 'failed'
    aggregation: 'Total'
    threshold: 0
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'alert-${rule.name}-${appInsightsName}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsights.id
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: rule.aggregation
            metricMeasureColumn: rule.measure
            operator: 'GreaterThan'
            threshold: rule.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: empty(alertEmail) ? [] : [
          actionGroup.id
        ]
      }
    }
  }
]
