// The operator's first view of the relay, deployed with it: events per minute by outcome, CIJ's
// answer times, the redelivery and poison queues, and Key Vault reads (relay.workbook.json; every
// metric it reads is checked against the code by tests/test_infra_monitoring.py).
param appInsightsName string
param location string
param tags object

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(appInsights.id, 'cij-relay-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'CIJ push relay'
    description: 'Events by outcome, CIJ answer times, redelivery and poison queues, Key Vault reads.'
    category: 'workbook'
    sourceId: appInsights.id
    version: 'Notebook/1.0'
    serializedData: replace(loadTextContent('relay.workbook.json'), 'APP_INSIGHTS_ID', appInsights.id)
  }
}

output workbookId string = workbook.id
